//! Entry points for fuzz targets and robustness tests: arbitrary bytes in, never a
//! panic, memory within the configured limits. Not a stable API.

use bytes::{Bytes, BytesMut};
use hgframe_wire::Frames;

use crate::{ClientConfig, ClientReactor, ServerAction, ServerConfig, ServerReactor};

/// What a run saw, for the caller to check.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Frames decoded and fed.
    pub frames: usize,
    /// Errors reported (actions or `Err`s).
    pub errors: usize,
    /// Commands dispatched (server) or events reported (client).
    pub dispatched: usize,
    /// The most bytes the server held for partial commands at any point.
    pub max_buffered: usize,
}

/// Decodes `data` as frames from a client and feeds them to a server reactor with
/// `config`, answering every command at once with its name; then ends the input and
/// pulls all output.
pub fn server_bytes(data: &[u8], config: ServerConfig) -> Outcome {
    let mut server = ServerReactor::new(config);
    let mut outcome = Outcome::default();
    let mut out = BytesMut::new();
    for frame in Frames::new(Bytes::copy_from_slice(data)) {
        let Ok(frame) = frame else { break };
        outcome.frames += 1;
        match server.on_frame(frame) {
            ServerAction::RunCommand(cmd) => {
                outcome.dispatched += 1;
                if server
                    .on_response_data(cmd.request_id, cmd.name, true)
                    .is_err()
                {
                    outcome.errors += 1;
                }
            }
            ServerAction::CommandData {
                request_id, eos, ..
            } if eos => {
                let _ = server.on_response_data(request_id, Bytes::new(), true);
            }
            ServerAction::Error(_) => outcome.errors += 1,
            _ => {}
        }
        outcome.max_buffered = outcome.max_buffered.max(server.buffered_bytes());
        out.clear();
        server.poll_transmit(&mut out, 1 << 16);
    }
    if let ServerAction::Error(_) = server.on_input_eof() {
        outcome.errors += 1;
    }
    while server.poll_transmit(&mut out, 1 << 16) > 0 {
        out.clear();
    }
    outcome
}

/// Decodes `data` as frames from a server and feeds them to a client reactor that has
/// a few commands in flight.
pub fn client_bytes(data: &[u8]) -> Outcome {
    let mut client = ClientReactor::new(ClientConfig::default());
    let mut outcome = Outcome::default();
    for _ in 0..4 {
        if client.call_command(b"cmd", [], None).is_err() {
            outcome.errors += 1;
        }
    }
    for frame in Frames::new(Bytes::copy_from_slice(data)) {
        let Ok(frame) = frame else { break };
        outcome.frames += 1;
        match client.on_frame(frame) {
            Ok(events) => outcome.dispatched += events.len(),
            Err(_) => outcome.errors += 1,
        }
    }
    match client.on_input_eof() {
        Ok(events) => outcome.dispatched += events.len(),
        Err(_) => outcome.errors += 1,
    }
    outcome
}
