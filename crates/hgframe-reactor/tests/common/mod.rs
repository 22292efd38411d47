//! Helpers shared by the integration tests: frames from the human syntax, command
//! frames as a client sends them, action inspection, and a deterministic client <->
//! server loopback harness (`Pair`, after quinn-proto's) with random chunking.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use hgframe_reactor::{
    ClientConfig, ClientEvent, ClientReactor, CommandRequest, ErrorKind, ServerAction,
    ServerConfig, ServerReactor, TextAtom,
};
use hgframe_stream::{EncodingSettings, OutgoingStream, Profiles, Side};
use hgframe_wire::build::{command_frames, FrameTarget};
use hgframe_wire::{Frame, FrameDecoder, RequestId, StreamId};

/// A frame from the human-readable syntax (the seed's `ffs`).
pub fn ffs(line: &str) -> Frame {
    Frame::from_human(line).unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// Frames of a command as the seed's `createcommandframes` makes them, without stream
/// flags, cut at `frame_size`.
pub fn raw_command(
    request: u16,
    name: &str,
    args: &[(&str, &[u8])],
    data: Option<&[u8]>,
    frame_size: usize,
) -> Vec<Frame> {
    let target = FrameTarget::new(RequestId(request), StreamId(1)).with_max_frame_size(frame_size);
    let args = args.iter().map(|(k, v)| {
        (
            Bytes::copy_from_slice(k.as_bytes()),
            Bytes::copy_from_slice(v),
        )
    });
    command_frames(target, name.as_bytes(), args, data).unwrap()
}

/// A client's stream 1: stamps `stream-begin` on its first frame (the seed's
/// `framing.stream(1)`).
pub struct ClientStream(OutgoingStream);

impl ClientStream {
    pub fn new() -> Self {
        Self::with_encoding("identity")
    }

    pub fn with_encoding(profile: &str) -> Self {
        Self(
            OutgoingStream::new(
                StreamId(1),
                Side::Client,
                &Profiles::default(),
                &EncodingSettings::new(profile),
            )
            .unwrap(),
        )
    }

    pub fn stamp(&mut self, frames: Vec<Frame>) -> Vec<Frame> {
        let mut out = Vec::new();
        for f in frames {
            self.0.push_frame(f, &mut out).unwrap();
        }
        out
    }

    pub fn inner(&mut self) -> &mut OutgoingStream {
        &mut self.0
    }

    /// The seed's `sendcommandframes`: the frames of one command on this stream.
    pub fn command(
        &mut self,
        request: u16,
        name: &str,
        args: &[(&str, &[u8])],
        data: Option<&[u8]>,
    ) -> Vec<Frame> {
        let frames = raw_command(request, name, args, data, 32768);
        self.stamp(frames)
    }
}

/// Feeds frames, one action each.
pub fn feed(server: &mut ServerReactor, frames: Vec<Frame>) -> Vec<ServerAction> {
    frames.into_iter().map(|f| server.on_frame(f)).collect()
}

/// The action's name, as the CLI prints it.
pub fn kind(a: &ServerAction) -> &'static str {
    match a {
        ServerAction::RunCommand(_) => "runcommand",
        ServerAction::CommandData { .. } => "commanddata",
        ServerAction::SendFrames => "sendframes",
        ServerAction::WantFrame => "wantframe",
        ServerAction::Error(_) => "error",
        ServerAction::Cancelled(_) => "cancelled",
        ServerAction::Noop => "noop",
    }
}

pub fn kinds(actions: &[ServerAction]) -> Vec<&'static str> {
    actions.iter().map(kind).collect()
}

#[track_caller]
pub fn run(a: ServerAction) -> CommandRequest {
    match a {
        ServerAction::RunCommand(c) => c,
        other => panic!("expected runcommand, got {other:?}"),
    }
}

#[track_caller]
pub fn error(a: ServerAction) -> String {
    match a {
        ServerAction::Error(e) => e.to_string(),
        other => panic!("expected error, got {other:?}"),
    }
}

/// Every frame the server lets out now, in the human syntax.
pub fn drain(server: &mut ServerReactor) -> Vec<String> {
    std::iter::from_fn(|| server.poll_frame())
        .map(|f| f.to_human())
        .collect()
}

pub fn args_of(c: &CommandRequest) -> BTreeMap<String, Vec<u8>> {
    c.args
        .iter()
        .map(|(k, v)| (String::from_utf8(k.to_vec()).unwrap(), v.to_vec()))
        .collect()
}

/// A small deterministic generator (xorshift64*), so harness runs replay exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// In `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        if hi <= lo {
            return lo;
        }
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        // Compressible but not trivial: a few symbols with runs.
        (0..n).map(|_| b"abcde\n"[self.range(0, 5)]).collect()
    }
}

/// What the loopback application answers for a command: its name, its arguments and
/// its data, serialized. Commands named `fail...` fail with an application error, and
/// commands named `text...` also send a text-output frame first.
pub fn expected_response(name: &[u8], args: &BTreeMap<Bytes, Bytes>, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(name);
    out.push(0);
    for (k, v) in args {
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
        out.push(0);
    }
    out.extend_from_slice(b"data:");
    out.extend_from_slice(data);
    out
}

/// What the client saw of one request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub data: Vec<u8>,
    pub text: Vec<TextAtom>,
    pub error: Option<(ErrorKind, String)>,
    pub done: bool,
}

/// A command running in the loopback application.
#[derive(Debug)]
struct Running {
    id: RequestId,
    name: Bytes,
    args: BTreeMap<Bytes, Bytes>,
    data: Vec<u8>,
    /// All data arrived (buffered mode: at once).
    data_done: bool,
    /// The response still to send, once computed.
    response: Option<Bytes>,
    text_sent: bool,
}

/// A client and a server reactor joined by two byte pipes, driven step by step with
/// random chunk sizes and random scheduling of the application's responses.
pub struct Pair {
    pub client: ClientReactor,
    pub server: ServerReactor,
    pub rng: Rng,
    c2s: BytesMut,
    s2c: BytesMut,
    server_in: BytesMut,
    client_in: BytesMut,
    server_decoder: FrameDecoder,
    client_decoder: FrameDecoder,
    running: Vec<Running>,
    pub outcomes: BTreeMap<RequestId, Outcome>,
    /// The client has issued everything: the server's input ends once it is delivered.
    pub client_done: bool,
    server_eof: bool,
    /// Largest piece moved per step.
    pub max_chunk: usize,
    pub server_actions: usize,
}

impl Pair {
    pub fn new(client: ClientConfig, server: ServerConfig, seed: u64) -> Self {
        Self {
            client: ClientReactor::new(client),
            server: ServerReactor::new(server),
            rng: Rng::new(seed),
            c2s: BytesMut::new(),
            s2c: BytesMut::new(),
            server_in: BytesMut::new(),
            client_in: BytesMut::new(),
            server_decoder: FrameDecoder::new(),
            client_decoder: FrameDecoder::new(),
            running: Vec::new(),
            outcomes: BTreeMap::new(),
            client_done: false,
            server_eof: false,
            max_chunk: 70_000,
            server_actions: 0,
        }
    }

    /// Issues a command through the client, its data in random pieces.
    pub fn call(
        &mut self,
        name: &[u8],
        args: Vec<(Bytes, Bytes)>,
        data: Option<Bytes>,
    ) -> RequestId {
        let id = match data {
            Some(data) if self.rng.chance(50) => {
                let id = self.client.start_command(name, args, true).unwrap();
                let mut rest = data;
                loop {
                    let n = self.rng.range(0, rest.len());
                    let piece = rest.split_to(n);
                    let eos = rest.is_empty() && self.rng.chance(70);
                    self.client.send_command_data(id, piece, eos).unwrap();
                    if eos {
                        break;
                    }
                    if rest.is_empty() {
                        self.client
                            .send_command_data(id, Bytes::new(), true)
                            .unwrap();
                        break;
                    }
                }
                id
            }
            data => self.client.call_command(name, args, data).unwrap(),
        };
        self.outcomes.insert(id, Outcome::default());
        id
    }

    /// Runs until every request is over and the server is finished.
    pub fn run(&mut self) {
        let mut idle = 0;
        while !self.finished() {
            if self.step() {
                idle = 0;
            } else {
                idle += 1;
                assert!(
                    idle < 3,
                    "loopback stalled: {} in flight, server finished: {}, running: {:?}",
                    self.client.in_flight(),
                    self.server.is_finished(),
                    self.running
                );
            }
        }
        assert!(self.client.on_input_eof().unwrap().is_empty());
    }

    fn finished(&self) -> bool {
        self.client.in_flight() == 0
            && self.server.is_finished()
            && self.s2c.is_empty()
            && self.client_in.is_empty()
            && self.server_eof
    }

    /// One round of random progress; returns whether anything moved.
    fn step(&mut self) -> bool {
        let mut moved = false;
        // Client -> pipe.
        if self.client.has_pending_output() {
            let max = self.rng.range(1, self.max_chunk);
            moved |= self.client.poll_transmit(&mut self.c2s, max) > 0;
        }
        // Pipe -> server, a random piece.
        if !self.c2s.is_empty() {
            let n = self.rng.range(1, self.c2s.len().min(self.max_chunk));
            let piece = self.c2s.split_to(n);
            self.server_in.extend_from_slice(&piece);
            moved = true;
            while let Some(frame) = self.server_decoder.decode(&mut self.server_in).unwrap() {
                let action = self.server.on_frame(frame);
                self.on_server_action(action);
            }
        }
        if self.client_done
            && !self.server_eof
            && !self.client.has_pending_output()
            && self.c2s.is_empty()
        {
            assert!(self.server_in.is_empty(), "partial frame at end of input");
            self.server_eof = true;
            let action = self.server.on_input_eof();
            self.on_server_action(action);
            moved = true;
        }
        // The application answers a random running command, a random piece.
        moved |= self.app_step();
        // Server -> pipe.
        if self.server.has_pending_output() {
            let max = self.rng.range(1, self.max_chunk);
            moved |= self.server.poll_transmit(&mut self.s2c, max) > 0;
        }
        // Pipe -> client.
        if !self.s2c.is_empty() {
            let n = self.rng.range(1, self.s2c.len().min(self.max_chunk));
            let piece = self.s2c.split_to(n);
            self.client_in.extend_from_slice(&piece);
            moved = true;
            while let Some(frame) = self.client_decoder.decode(&mut self.client_in).unwrap() {
                for event in self.client.on_frame(frame).unwrap() {
                    self.on_client_event(event);
                }
            }
        }
        moved
    }

    fn on_server_action(&mut self, action: ServerAction) {
        self.server_actions += 1;
        match action {
            ServerAction::RunCommand(cmd) => {
                let data_done = !cmd.data_follows;
                let mut r = Running {
                    id: cmd.request_id,
                    name: cmd.name,
                    args: cmd.args,
                    data: cmd.data.map(|d| d.to_vec()).unwrap_or_default(),
                    data_done,
                    response: None,
                    text_sent: false,
                };
                if data_done {
                    r.response = Some(Bytes::from(expected_response(&r.name, &r.args, &r.data)));
                }
                self.running.push(r);
            }
            ServerAction::CommandData {
                request_id,
                data,
                eos,
            } => {
                let r = self
                    .running
                    .iter_mut()
                    .find(|r| r.id == request_id)
                    .expect("data for a running command");
                assert!(!r.data_done);
                r.data.extend_from_slice(&data);
                if eos {
                    r.data_done = true;
                    r.response = Some(Bytes::from(expected_response(&r.name, &r.args, &r.data)));
                }
            }
            ServerAction::SendFrames | ServerAction::WantFrame | ServerAction::Noop => {}
            ServerAction::Cancelled(r) => panic!("request {r} cancelled in loopback"),
            ServerAction::Error(e) => panic!("server error in loopback: {e}"),
        }
    }

    fn app_step(&mut self) -> bool {
        let ready: Vec<usize> = (0..self.running.len())
            .filter(|&i| self.running[i].response.is_some())
            .collect();
        if ready.is_empty() {
            return false;
        }
        let i = ready[self.rng.range(0, ready.len() - 1)];
        let r = &mut self.running[i];
        let id = r.id;
        if r.name.starts_with(b"fail") {
            let msg = format!("failed: {}", String::from_utf8_lossy(&r.name));
            let _ = self.server.on_application_error(id, &msg).unwrap();
            self.running.remove(i);
            return true;
        }
        if r.name.starts_with(b"text") && !r.text_sent {
            r.text_sent = true;
            let atom = TextAtom::new(
                "running %s\n",
                vec![String::from_utf8_lossy(&r.name).into_owned()],
            );
            match self.server.on_text_output(id, &[atom]) {
                Ok(_) => {}
                // Frames this small (16 bytes) cannot hold the text: it is refused
                // with nothing queued, and the command goes on without it.
                Err(hgframe_reactor::ReactorError::Build(_)) => {}
                Err(e) => panic!("text output: {e}"),
            }
            return true;
        }
        let response = r.response.as_mut().expect("ready");
        let n = self.rng.range(0, response.len());
        let piece = response.split_to(n);
        let eos = response.is_empty() && self.rng.chance(80);
        let _ = self.server.on_response_data(id, piece, eos).unwrap();
        if eos {
            self.running.remove(i);
        }
        true
    }

    fn on_client_event(&mut self, event: ClientEvent) {
        let id = event.request_id();
        let o = self
            .outcomes
            .get_mut(&id)
            .expect("event for an issued request");
        assert!(!o.done, "event after the end of request {id}");
        match event {
            ClientEvent::ResponseData { data, eos, .. } => {
                o.data.extend_from_slice(&data);
                o.done = eos;
            }
            ClientEvent::TextOutput { atoms, .. } => o.text.extend(atoms),
            ClientEvent::Error { kind, message, .. } => {
                o.error = Some((kind, message));
                o.done = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
