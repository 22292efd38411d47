//! Entry points for fuzz targets and robustness tests: arbitrary bytes in, never a
//! panic, memory within the configured limits. Not a stable API.

use std::collections::{BTreeSet, VecDeque};

use bytes::{Bytes, BytesMut};
use hgframe_stream::{DecodeLimits, IncomingStreams, Profiles, Side};
use hgframe_wire::extension::{Extensions, CANCEL};
use hgframe_wire::payload::progress::Progress;
use hgframe_wire::payload::text_output::TextAtom;
use hgframe_wire::{
    ErrorResponseFlags, Frame, FrameType, Frames, RequestId, StreamFlags, StreamId, MAX_PAYLOAD_LEN,
};

use crate::{
    ClientConfig, ClientEvent, ClientReactor, CommandRequest, DataMode, ServerAction, ServerConfig,
    ServerReactor,
};

/// What a property check found: `Err` names the property that broke.
pub type Check = Result<(), String>;

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

/// How the fuzzed driver answers a command, picked by the first byte of its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// At once: the name and every argument as data, `eos`.
    Echo,
    /// A text-output frame, then the data.
    Text,
    /// An application error.
    Fail,
    /// Later: one step per frame fed afterwards, ended at the latest at end of input.
    Deferred,
    /// Part of the data now, the rest later.
    Pieces,
    /// Frames from a stream the driver opened ([`ServerReactor::open_output_stream`]).
    DriverStream,
}

impl Answer {
    fn of(cmd: &CommandRequest) -> Self {
        match cmd.name.first().map_or(0, |b| b % 6) {
            0 => Self::Echo,
            1 => Self::Text,
            2 => Self::Fail,
            3 => Self::Deferred,
            4 => Self::Pieces,
            _ => Self::DriverStream,
        }
    }
}

/// A server reactor driven like a real driver: `data[0]` picks the configuration
/// (bit 0 deferred output, bit 1 streaming command data, bit 2 `zstd-8mb` output,
/// bit 3 tight limits, bits 4..7 how much each pull takes, bit 7 shapes the frames like
/// a client's), `data[1..]` is the client's frames in wire format. Every command dispatched is
/// answered, at once or later, in one of several ways chosen by its name (with streamed
/// data, some answers wait for the data's end), so the reactor gets past its limits on
/// active requests; at end of input every answer is finished and all output is pulled.
///
/// Checks: every answer to a running request is accepted; partial commands never hold
/// more than `max_buffered_data`; everything pulled decodes as valid frames on even
/// streams (through a client's stream layer); every dispatched command gets exactly one
/// final frame; and at the end nothing is left (`is_finished`).
pub fn server_session(data: &[u8]) -> Check {
    run_server_session(data).map(drop)
}

/// [`server_session`], returning everything the server sent.
fn run_server_session(data: &[u8]) -> Result<Bytes, String> {
    let Some((&mode, input)) = data.split_first() else {
        return Ok(Bytes::new());
    };
    let mut config = ServerConfig::default();
    config.set_defer_output(mode & 1 != 0);
    if mode & 2 != 0 {
        config.set_data_mode(DataMode::Streaming);
    }
    if mode & 4 != 0 {
        config.set_peer_accepts(&["zstd-8mb", "identity"]);
    }
    if mode & 8 != 0 {
        config
            .set_max_buffered_data(300)
            .set_max_args_per_command(3)
            .set_max_receiving_commands(2)
            .set_max_active_requests(2)
            .set_max_frame_size(64);
    }
    let pull = 1usize << (usize::from((mode >> 4) & 7) + 4);
    // The extensions are negotiated: `cancel` frames of the input are acted on, and
    // some answers report progress (`server_bytes` covers a server without them).
    config.set_peer_extensions(Extensions::all());
    let mut shape = (mode & 0x80 != 0).then(|| Shape::new(Side::Client, None));
    let max_buffered = config.max_buffered_data();
    let mut driver = Driver {
        server: ServerReactor::new(config),
        pending: VecDeque::new(),
        awaiting: Vec::new(),
        dispatched: 0,
        output: Output::new(),
        pull,
    };
    for frame in Frames::new(Bytes::copy_from_slice(input)).map_while(Result::ok) {
        let frame = match &mut shape {
            Some(shape) => shape.apply(frame),
            None => frame,
        };
        let action = driver.server.on_frame(frame);
        driver.act(action)?;
        if driver.server.buffered_bytes() > max_buffered {
            return Err(format!(
                "{} bytes buffered for partial commands, over the limit of {max_buffered}",
                driver.server.buffered_bytes()
            ));
        }
        driver.step()?;
        driver.pull_some()?;
    }
    let action = driver.server.on_input_eof();
    driver.act(action)?;
    driver.answer_awaiting()?;
    while !driver.pending.is_empty() {
        driver.step()?;
    }
    driver.pull_all()?;
    // A cancelled command ends with the server's `cancel` frame instead (and a command
    // cancelled before it was dispatched gets one too).
    let ended = driver.output.final_frames + driver.output.cancels;
    if driver.output.final_frames > driver.dispatched || ended < driver.dispatched {
        return Err(format!(
            "{} commands dispatched, {} final response frames and {} cancels sent",
            driver.dispatched, driver.output.final_frames, driver.output.cancels
        ));
    }
    if !driver.server.is_finished() || driver.server.active_requests() != 0 {
        return Err(format!(
            "every answer is finished and all output pulled, yet the server is not done \
             ({} active requests, {} bytes queued)",
            driver.server.active_requests(),
            driver.server.queued_output_bytes()
        ));
    }
    Ok(driver.output.all.freeze())
}

/// A command being answered over several steps.
struct Pending {
    request: RequestId,
    answer: Answer,
    body: Bytes,
    steps: u8,
}

struct Driver {
    server: ServerReactor,
    pending: VecDeque<Pending>,
    /// Commands whose streamed data has not ended, with their answer and what came.
    awaiting: Vec<(RequestId, Answer, BytesMut)>,
    dispatched: usize,
    output: Output,
    pull: usize,
}

impl Driver {
    fn act(&mut self, action: ServerAction) -> Check {
        let cmd = match action {
            ServerAction::RunCommand(cmd) => cmd,
            ServerAction::Cancelled(request) => {
                // The handler is stopped: nothing more is answered.
                self.pending.retain(|p| p.request != request);
                self.awaiting.retain(|(r, ..)| *r != request);
                return Ok(());
            }
            ServerAction::CommandData {
                request_id,
                data,
                eos,
            } => return self.on_data(request_id, &data, eos),
            _ => return Ok(()),
        };
        self.dispatched += 1;
        let answer = Answer::of(&cmd);
        let mut body = BytesMut::from(&cmd.name[..]);
        for (k, v) in &cmd.args {
            body.extend_from_slice(k);
            body.extend_from_slice(v);
        }
        if let Some(data) = &cmd.data {
            body.extend_from_slice(data);
        }
        if cmd.data_follows && !matches!(answer, Answer::Echo | Answer::Text | Answer::Fail) {
            // Streamed data: these answers wait for its end (the others answer while
            // it still arrives).
            self.awaiting.push((cmd.request_id, answer, body));
            return Ok(());
        }
        self.answer(cmd.request_id, answer, body.freeze())
    }

    /// A piece of a streamed command's data: kept (the first 4 KiB), and the command is
    /// answered at its end.
    fn on_data(&mut self, request: RequestId, data: &Bytes, eos: bool) -> Check {
        let Some(at) = self.awaiting.iter().position(|(r, ..)| *r == request) else {
            return Ok(());
        };
        if let Some((_, _, body)) = self.awaiting.get_mut(at) {
            let room = 4096usize.saturating_sub(body.len());
            body.extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
        }
        if eos {
            let (request, answer, body) = self.awaiting.swap_remove(at);
            return self.answer(request, answer, body.freeze());
        }
        Ok(())
    }

    /// Input ended: commands still waiting for their data are answered with what came.
    fn answer_awaiting(&mut self) -> Check {
        for (request, answer, body) in std::mem::take(&mut self.awaiting) {
            self.answer(request, answer, body.freeze())?;
        }
        Ok(())
    }

    fn answer(&mut self, request: RequestId, answer: Answer, body: Bytes) -> Check {
        let accepted = |r: Result<ServerAction, crate::ReactorError>| {
            r.map(drop)
                .map_err(|e| format!("answering running request {request}: {e}"))
        };
        match answer {
            Answer::Echo => accepted(self.server.on_response_data(request, body, true)),
            Answer::Text => {
                let report = Progress {
                    topic: "text".into(),
                    position: body.len() as u64,
                    total: 0,
                };
                accepted(self.server.on_progress(request, &report))?;
                let atom = TextAtom::new("%s said %s", vec!["cmd".into(), "hi".into()]);
                accepted(self.server.on_text_output(request, &[atom]))?;
                accepted(self.server.on_response_data(request, body, true))
            }
            Answer::Fail => accepted(self.server.on_application_error(request, "no")),
            Answer::Deferred | Answer::Pieces | Answer::DriverStream => {
                if answer == Answer::Pieces {
                    let half = body.slice(..body.len() / 2);
                    accepted(self.server.on_response_data(request, half, false))?;
                }
                self.pending.push_back(Pending {
                    request,
                    answer,
                    body,
                    steps: 0,
                });
                Ok(())
            }
        }
    }

    /// Moves the oldest pending answer one step on.
    fn step(&mut self) -> Check {
        let Some(mut p) = self.pending.pop_front() else {
            return Ok(());
        };
        let request = p.request;
        let accepted = |r: Result<ServerAction, crate::ReactorError>| {
            r.map(drop)
                .map_err(|e| format!("answering running request {request}: {e}"))
        };
        p.steps += 1;
        match p.answer {
            Answer::Deferred if p.steps < 2 => {
                accepted(self.server.on_response_data(request, p.body.clone(), false))?;
                self.pending.push_back(p);
                Ok(())
            }
            Answer::Pieces => {
                let rest = p.body.slice(p.body.len() / 2..);
                accepted(self.server.on_response_data(request, rest, true))
            }
            Answer::DriverStream => {
                let mut stream = self
                    .server
                    .open_output_stream()
                    .map_err(|e| format!("opening a driver stream: {e}"))?;
                let mut frames = Vec::new();
                let pushed = stream
                    .push_data(
                        request,
                        FrameType::BytesResponse,
                        p.body,
                        false,
                        &mut frames,
                    )
                    .and_then(|()| stream.end(&mut frames));
                if let Err(e) = pushed {
                    return Err(format!("a driver stream refused data: {e}"));
                }
                let queued = self.server.on_response_frames(request, frames, false);
                self.server.close_output_stream(stream);
                accepted(queued)?;
                accepted(self.server.on_response_data(request, Bytes::new(), true))
            }
            _ => accepted(self.server.on_response_data(request, Bytes::new(), true)),
        }
    }

    fn pull_some(&mut self) -> Check {
        let mut out = BytesMut::new();
        self.server.poll_transmit(&mut out, self.pull);
        self.output.check(out.freeze())
    }

    fn pull_all(&mut self) -> Check {
        loop {
            let mut out = BytesMut::new();
            if self.server.poll_transmit(&mut out, self.pull) == 0 {
                return Ok(());
            }
            self.output.check(out.freeze())?;
        }
    }
}

/// The server's output as a client reads it.
struct Output {
    incoming: IncomingStreams,
    /// Bytes-response `eos` and application error frames seen.
    final_frames: usize,
    /// Protocol errors seen.
    protocol_errors: usize,
    /// `cancel` frames seen (the last frame of a cancelled request).
    cancels: usize,
    rest: BytesMut,
    /// Everything pulled, in order.
    all: BytesMut,
}

impl Output {
    fn new() -> Self {
        let mut limits = DecodeLimits::default();
        limits.max_decoded_frame_len(MAX_PAYLOAD_LEN);
        Self {
            incoming: IncomingStreams::new(Side::Client, Profiles::default(), limits),
            final_frames: 0,
            protocol_errors: 0,
            cancels: 0,
            rest: BytesMut::new(),
            all: BytesMut::new(),
        }
    }

    fn check(&mut self, pulled: Bytes) -> Check {
        self.all.extend_from_slice(&pulled);
        self.rest.extend_from_slice(&pulled);
        let mut decoder = hgframe_wire::FrameDecoder::with_max_payload_len(MAX_PAYLOAD_LEN);
        loop {
            let frame = match decoder.decode(&mut self.rest) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return Err(format!("the server's output does not decode: {e}")),
            };
            if frame.stream_id().is_client_initiated() {
                return Err(format!("the server sent on stream {}", frame.stream_id()));
            }
            let frame = match self.incoming.on_frame(frame) {
                Ok(Some(frame)) => frame,
                Ok(None) => continue,
                Err(e) => return Err(format!("the server's output breaks the stream rules: {e}")),
            };
            self.count(&frame);
        }
        if !self.rest.is_empty() {
            return Err(format!(
                "a pull left {} bytes of a partial frame",
                self.rest.len()
            ));
        }
        Ok(())
    }

    fn count(&mut self, frame: &Frame) {
        match frame.known_type() {
            Some(FrameType::BytesResponse) if frame.flags() & 0x02 != 0 => {
                self.final_frames += 1;
            }
            Some(FrameType::ErrorResponse)
                if frame.flags() == ErrorResponseFlags::APPLICATION.bits() =>
            {
                self.final_frames += 1;
            }
            Some(FrameType::ErrorResponse) => self.protocol_errors += 1,
            _ if frame.frame_type() == CANCEL => self.cancels += 1,
            _ => {}
        }
    }
}

/// A client reactor driven like a real driver: `data[0]` picks the configuration (bits
/// 0..2: how many commands, bit 2 the last one sends data, bit 3 `zstd-8mb` for the
/// client's own stream, bit 4 a tight in-flight limit, bit 5 shapes the frames like a
/// server's, bit 6 the extensions are negotiated and the first command is cancelled),
/// `data[1..]` is the server's frames in wire format.
///
/// Checks: the client's own output decodes as valid frames on odd streams; every event
/// names a request that was in flight, and none a cancelled one; a final event ends its
/// request; after a protocol error every call fails.
pub fn client_session(data: &[u8]) -> Check {
    let Some((&mode, input)) = data.split_first() else {
        return Ok(());
    };
    let mut config = ClientConfig::default();
    if mode & 8 != 0 {
        config.set_encoding("zstd-8mb");
    }
    if mode & 16 != 0 {
        config.set_max_in_flight(2);
    }
    let extended = mode & 0x40 != 0;
    if extended {
        config.set_extensions(Extensions::all());
    }
    let mut client = ClientReactor::new(config);
    if extended {
        client.set_extensions(Extensions::all());
    }
    let commands = usize::from(mode & 3) + 1;
    let mut issued = Vec::new();
    for i in 0..commands {
        let data = (mode & 4 != 0 && i + 1 == commands).then(|| Bytes::from("data ".repeat(50)));
        // Over the in-flight limit the call is refused; that is fine.
        if let Ok(id) = client.call_command(b"cmd", [(Bytes::from("k"), Bytes::from("v"))], data) {
            issued.push(id);
        }
    }
    let cancelled = match issued.first() {
        Some(&first) if extended => {
            let sent = client
                .cancel(first)
                .map_err(|e| format!("cancelling request {first}: {e}"))?;
            sent.then_some(first)
        }
        _ => None,
    };
    client.finish_sending();
    let mut out = BytesMut::new();
    while client.poll_transmit(&mut out, 1 << 16) > 0 {}
    let mut own = IncomingStreams::new(Side::Server, Profiles::default(), DecodeLimits::default());
    for frame in Frames::new(out.freeze()) {
        let frame = frame.map_err(|e| format!("the client's output does not decode: {e}"))?;
        if !frame.stream_id().is_client_initiated() {
            return Err(format!("the client sent on stream {}", frame.stream_id()));
        }
        own.on_frame(frame)
            .map_err(|e| format!("the client's output breaks the stream rules: {e}"))?;
    }

    let mut shape = (mode & 0x20 != 0).then(|| Shape::new(Side::Server, Some(issued.clone())));
    let mut failed = false;
    for frame in Frames::new(Bytes::copy_from_slice(input)).map_while(Result::ok) {
        let frame = match &mut shape {
            Some(shape) => shape.apply(frame),
            None => frame,
        };
        let before: BTreeSet<RequestId> = issued
            .iter()
            .copied()
            .filter(|&r| client.is_in_flight(r))
            .collect();
        match client.on_frame(frame) {
            Ok(events) => {
                if events.iter().any(|e| Some(e.request_id()) == cancelled) {
                    return Err("an event for a cancelled request".into());
                }
                check_events(&client, &before, &events)?;
            }
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    if failed {
        if client.in_flight() != 0 {
            return Err("a failed client still has requests in flight".into());
        }
        if client.call_command(b"cmd", [], None).is_ok() || client.on_input_eof().is_ok() {
            return Err("a failed client still takes calls".into());
        }
        return Ok(());
    }
    // A cancelled request still in flight gets no event at the end either.
    let still_cancelled = cancelled.is_some_and(|id| client.is_in_flight(id));
    let left = client.in_flight() - usize::from(still_cancelled);
    let events = client
        .on_input_eof()
        .map_err(|e| format!("end of input on a healthy client: {e}"))?;
    if events.len() != left || client.in_flight() != 0 {
        return Err(format!(
            "{left} requests in flight at end of input, {} events",
            events.len()
        ));
    }
    Ok(())
}

fn check_events(
    client: &ClientReactor,
    before: &BTreeSet<RequestId>,
    events: &[ClientEvent],
) -> Check {
    for event in events {
        let id = event.request_id();
        if !before.contains(&id) {
            return Err(format!(
                "an event for request {id}, which was not in flight"
            ));
        }
        if event.is_final() && client.is_in_flight(id) {
            return Err(format!(
                "request {id} is still in flight after its final event"
            ));
        }
    }
    Ok(())
}

/// Makes arbitrary frames look like a peer's, so the fuzzer spends its time on the
/// reactor's rules rather than on the stream layer's first checks: stream ids get the
/// sender's parity, `stream-begin` is set on the first frame of each stream and cleared
/// on the others, and request ids are the client's (odd) or, for a client reading
/// answers, one of the requests it issued.
struct Shape {
    sender: Side,
    requests: Option<Vec<RequestId>>,
    open: BTreeSet<u8>,
}

impl Shape {
    fn new(sender: Side, requests: Option<Vec<RequestId>>) -> Self {
        Self {
            sender,
            requests,
            open: BTreeSet::new(),
        }
    }

    fn apply(&mut self, frame: Frame) -> Frame {
        let stream = match self.sender {
            Side::Client => frame.stream_id().0 | 1,
            Side::Server => frame.stream_id().0 & !1,
        };
        let mut flags = frame.stream_flags() - StreamFlags::STREAM_BEGIN;
        if self.open.insert(stream) {
            flags |= StreamFlags::STREAM_BEGIN;
        }
        if flags.contains(StreamFlags::STREAM_END) {
            self.open.remove(&stream);
        }
        let request = match &self.requests {
            Some(ids) if !ids.is_empty() => ids
                .get(usize::from(frame.request_id().0) % ids.len())
                .copied()
                .unwrap_or_else(|| frame.request_id()),
            Some(_) => frame.request_id(),
            None => RequestId(frame.request_id().0 | 1),
        };
        Frame::from_raw(
            request,
            StreamId(stream),
            flags,
            frame.frame_type(),
            frame.flags(),
            frame.payload().clone(),
        )
        .unwrap_or(frame)
    }
}

/// What a client sends for `names` (each with an argument; the last with command data
/// when `with_data`), with its own stream encoded as `encoding`.
fn client_traffic(encoding: &str, names: &[&str], with_data: bool) -> Result<Vec<u8>, String> {
    let mut config = ClientConfig::default();
    config.set_encoding(encoding).set_max_frame_size(64);
    let mut client = ClientReactor::new(config);
    for (i, name) in names.iter().enumerate() {
        let data = (with_data && i + 1 == names.len()).then(|| Bytes::from("data ".repeat(40)));
        let value = Bytes::from(format!("value of {name} ").repeat(i + 1));
        client
            .call_command(name.as_bytes(), [(Bytes::from("arg"), value)], data)
            .map_err(|e| format!("calling {name}: {e}"))?;
    }
    client.finish_sending();
    let mut out = BytesMut::new();
    while client.poll_transmit(&mut out, 1 << 16) > 0 {}
    Ok(out.to_vec())
}

/// What a client that negotiated the extensions sends for `names` (no arguments)
/// when it cancels the fourth command (`cat`: answered over several steps) right after
/// issuing it.
fn cancelling_traffic(names: &[&str]) -> Result<Vec<u8>, String> {
    let mut config = ClientConfig::default();
    config.set_extensions(Extensions::all());
    let mut client = ClientReactor::new(config);
    client.set_extensions(Extensions::all());
    for (i, name) in names.iter().enumerate() {
        let id = client
            .call_command(name.as_bytes(), [], None)
            .map_err(|e| format!("calling {name}: {e}"))?;
        if i == 3 {
            client
                .cancel(id)
                .map_err(|e| format!("cancelling {name}: {e}"))?;
        }
    }
    client.finish_sending();
    let mut out = BytesMut::new();
    while client.poll_transmit(&mut out, 1 << 16) > 0 {}
    Ok(out.to_vec())
}

/// Seed inputs made from valid traffic, for the `server_reactor` and `client_reactor`
/// targets: `(target, input)`. Each name's first byte picks how the fuzzed driver
/// answers (see [`server_session`]), so the seeds cover every kind of answer.
pub fn seeds() -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    let names = ["foo", "add", "bad", "cat", "dog", "echo"];
    let mut seeds = Vec::new();
    for (mode, encoding, with_data) in [
        (0x00u8, "identity", false),
        (0x06, "zstd-8mb", true),
        (0x29, "identity", true),
        (0x3c, "zstd-8mb", false),
        (0x8a, "zstd-8mb", true),
    ] {
        let traffic = client_traffic(encoding, &names, with_data)?;
        let mut input = vec![mode];
        input.extend_from_slice(&traffic);
        seeds.push(("server_reactor", input));
    }
    // Commands with one cancelled while it runs (extension `cancel`).
    let mut input = vec![0x00u8];
    input.extend_from_slice(&cancelling_traffic(&names)?);
    seeds.push(("server_reactor", input));
    // The server's answers to four commands (request ids 1, 3, 5, 7), as the client
    // of `client_session` issues them.
    // All but the first client negotiated the extensions (the server's answers report
    // progress; the first client takes that for a protocol error, as it should).
    for (server_mode, client_mode) in [(0x00u8, 0x03u8), (0x04, 0x4b), (0x24, 0x47), (0x80, 0x63)] {
        let traffic = client_traffic("identity", &["foo", "add", "bad", "dog"], false)?;
        let mut input = vec![server_mode];
        input.extend_from_slice(&traffic);
        let answers = run_server_session(&input)?;
        let mut seed = vec![client_mode];
        seed.extend_from_slice(&answers);
        seeds.push(("client_reactor", seed));
    }
    Ok(seeds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_pass_every_check_and_reach_the_answers() {
        let seeds = seeds().unwrap();
        assert_eq!(seeds.len(), 10);
        for (target, input) in &seeds {
            match *target {
                "server_reactor" => server_session(input).unwrap(),
                "client_reactor" => client_session(input).unwrap(),
                other => panic!("unknown target {other}"),
            }
        }
        // The identity server seed dispatches all six commands and answers each.
        let (_, input) = &seeds[0];
        let output = run_server_session(input).unwrap();
        let mut out = Output::new();
        out.check(output).unwrap();
        assert_eq!(out.final_frames, 6);
        assert_eq!(out.protocol_errors, 0);
        // The cancelling seed: the cancelled command ends with the server's cancel
        // frame instead of its last data.
        let (_, input) = &seeds[5];
        let mut out = Output::new();
        out.check(run_server_session(input).unwrap()).unwrap();
        assert_eq!(
            (out.final_frames, out.cancels, out.protocol_errors),
            (5, 1, 0)
        );
    }

    #[test]
    fn answering_lets_more_commands_through_than_the_active_limit() {
        // Tight limits (two active requests) and six commands, each answered before the
        // next arrives: all six run.
        let traffic = client_traffic(
            "identity",
            &["foo", "add", "bad", "fff", "aaa", "bbb"],
            false,
        )
        .unwrap();
        let mut input = vec![0x08];
        input.extend_from_slice(&traffic);
        let output = run_server_session(&input).unwrap();
        let mut out = Output::new();
        out.check(output).unwrap();
        assert_eq!((out.final_frames, out.protocol_errors), (6, 0));
    }

    #[test]
    fn streamed_data_is_answered_at_its_end() {
        // Streaming mode; "echo" (a driver-stream answer) has 200 bytes of data in
        // several 64-byte frames and is answered once they have all come.
        let traffic = client_traffic("identity", &["foo", "echo"], true).unwrap();
        let mut input = vec![0x02];
        input.extend_from_slice(&traffic);
        let output = run_server_session(&input).unwrap();
        let mut out = Output::new();
        out.check(output.clone()).unwrap();
        assert_eq!((out.final_frames, out.protocol_errors), (2, 0));
        // The echo's answer carries the data that was streamed.
        let answer: Vec<u8> = Frames::new(output)
            .map(Result::unwrap)
            .filter(|f| f.request_id() == RequestId(3))
            .flat_map(|f| f.payload().to_vec())
            .collect();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.contains(&"data ".repeat(40)), "{answer}");
    }

    #[test]
    fn shaped_frames_have_the_senders_parity_and_begin_each_stream() {
        let raw = |r, s, flags| {
            Frame::from_raw(RequestId(r), StreamId(s), flags, 1, 1, Bytes::new()).unwrap()
        };
        let mut shape = Shape::new(Side::Client, None);
        let a = shape.apply(raw(2, 2, StreamFlags::empty()));
        let b = shape.apply(raw(
            4,
            3,
            StreamFlags::STREAM_BEGIN | StreamFlags::STREAM_END,
        ));
        let c = shape.apply(raw(6, 3, StreamFlags::empty()));
        assert_eq!((a.request_id(), a.stream_id()), (RequestId(3), StreamId(3)));
        assert_eq!(a.stream_flags(), StreamFlags::STREAM_BEGIN);
        assert_eq!(b.stream_flags(), StreamFlags::STREAM_END);
        // The stream ended: the next frame opens it again.
        assert_eq!(c.stream_flags(), StreamFlags::STREAM_BEGIN);

        let mut shape = Shape::new(Side::Server, Some(vec![RequestId(1), RequestId(3)]));
        let d = shape.apply(raw(5, 7, StreamFlags::empty()));
        assert_eq!((d.request_id(), d.stream_id()), (RequestId(3), StreamId(6)));
    }

    #[test]
    fn garbage_passes_the_checks() {
        let garbage: Vec<u8> = (0..=255u8).cycle().take(2000).collect();
        for mode in [0u8, 0x0f, 0xff] {
            let mut data = vec![mode];
            data.extend_from_slice(&garbage);
            server_session(&data).unwrap();
            client_session(&data).unwrap();
        }
    }
}
