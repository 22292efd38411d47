//! A [`Server`]: the commands, the settings, and the resources every exchange of a
//! server shares (handler slots, the memory budget, the blocking pool). Transports hand
//! it frames and carry its output away; [`Server::start`] runs each exchange on a task
//! of its own.

use std::sync::Arc;

use bytes::BytesMut;
use hgframe_reactor::{DataMode, ServerReactor};
use hgframe_wire::codec::FrameCodec;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;
use tracing::Instrument;

use crate::admission::{BlockingPool, MemoryBudget};
use crate::caller::Caller;
use crate::command::Registry;
use crate::config::{ConfigError, EngineConfig};
use crate::exchange::spares::Spares;
use crate::exchange::{Exchange, Scope};
use crate::output::{FrameInput, Output, OutputChunk, OutputSpares};
use crate::stats::ExchangeStats;

/// Whether an exchange may answer before its input has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Duplex {
    /// Full duplex over HTTP/2 (h2c included), half duplex over HTTP/1.x (HTTP only;
    /// byte streams are always full duplex).
    #[default]
    Auto,
    /// Hold every response until the input has ended (the seed's deferred output), for
    /// clients that send their whole request before they read. Commands still run, and
    /// their data still streams to them, as the request arrives; what cannot be held is
    /// deferred (see [`EngineConfig::max_held_output`]).
    Half,
    /// Answer as soon as there is something to say. Only for clients that read while
    /// they send.
    Full,
}

/// The commands and settings of a server, and what its exchanges share. Cheap to clone.
///
/// ```
/// use hgframe_engine::{EngineConfig, Registry, Server};
/// let server = Server::new(Registry::new(), EngineConfig::default()).unwrap();
/// let mut bad = EngineConfig::default();
/// bad.set_max_handlers(0);
/// assert_eq!(Server::new(Registry::new(), bad).unwrap_err().setting(), "max_handlers");
/// # let _ = server;
/// ```
#[derive(Clone, Debug)]
pub struct Server {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: Arc<EngineConfig>,
    registry: Arc<Registry>,
    /// Reactor settings for half-duplex exchanges: deferred output.
    half: Arc<hgframe_reactor::ServerConfig>,
    /// Reactor settings for full-duplex exchanges and byte streams.
    full: Arc<hgframe_reactor::ServerConfig>,
    resources: Resources,
    /// Output queues of exchanges that ended inside their transport's future.
    outputs: Arc<OutputSpares>,
}

/// What every exchange of a server draws from.
#[derive(Debug, Clone)]
pub(crate) struct Resources {
    /// Handler slots, server-wide.
    pub(crate) handlers: Arc<Semaphore>,
    /// Bytes held for clients and for waiting commands, server-wide.
    pub(crate) memory: MemoryBudget,
    /// Threads for blocking work.
    pub(crate) blocking: BlockingPool,
    /// One thread per worker stream slot, for compressing pieces (see
    /// [`crate::offload`]): a stream's pieces always run on the same thread.
    pub(crate) compressors: Arc<[BlockingPool]>,
    /// Report queues of exchanges that have ended, for the next ones.
    pub(crate) spares: Arc<Spares>,
}

/// The read buffer of a frame reader ([`FramedRead::new`]'s).
const READ_BUFFER: usize = 8 * 1024;

/// An exchange not started yet ([`Server::prepare`]): poll it, or spawn it.
pub type ExchangeFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = ExchangeStats> + Send + 'static>>;

/// An exchange running on its own task: its output, and its counters when it ends.
#[derive(Debug)]
pub struct Running {
    /// Chunks of encoded frames, in order; an `Err` means the exchange gave up (abort
    /// the transport rather than end it cleanly). Dropping it ends the exchange.
    pub output: mpsc::Receiver<OutputChunk>,
    /// The exchange's counters, once it has ended.
    pub done: JoinHandle<ExchangeStats>,
}

impl Server {
    /// A server of `registry` with `config`, which is checked first
    /// ([`EngineConfig::validate`]).
    pub fn new(registry: Registry, config: EngineConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        registry.validate()?;
        // Every request id a client can have open at once: admission is by cost
        // (handlers, bytes), and a request's bookkeeping is small; see `docs/`.
        let mut half = config.reactor().clone();
        half.set_defer_output(true)
            .set_data_mode(DataMode::Streaming)
            .set_peer_accepts(&[hgframe_reactor::IDENTITY]);
        let mut full = config.reactor().clone();
        full.set_defer_output(false)
            .set_data_mode(DataMode::Streaming)
            .set_peer_accepts(&[hgframe_reactor::IDENTITY]);
        let resources = Resources {
            handlers: Arc::new(Semaphore::new(config.max_server_handlers())),
            memory: MemoryBudget::new(config.memory_budget()),
            blocking: BlockingPool::new(config.blocking_threads()),
            // Threads start with their first piece; none when pieces stay on the
            // exchange's task (`parallel_streams` 1).
            compressors: (0..config.parallel_streams())
                .filter(|_| config.parallel_streams() >= 2)
                .map(|_| BlockingPool::new(1))
                .collect(),
            spares: Arc::new(Spares::new(config.report_queue())),
        };
        let outputs = Arc::new(OutputSpares::new(config.body_queue()));
        Ok(Self {
            shared: Arc::new(Shared {
                config: Arc::new(config),
                registry: Arc::new(registry),
                half: Arc::new(half),
                full: Arc::new(full),
                resources,
                outputs,
            }),
        })
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// The commands.
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    /// The server-wide memory budget (what is charged now, and its limit).
    pub fn memory(&self) -> &MemoryBudget {
        &self.shared.resources.memory
    }

    /// Handlers running now, across every exchange of the server (each holds one of
    /// [`EngineConfig::max_server_handlers`] slots until it ends or is cancelled).
    pub fn handlers_running(&self) -> usize {
        let free = self.shared.resources.handlers.available_permits();
        self.shared
            .config
            .max_server_handlers()
            .saturating_sub(free)
    }

    /// The pool for blocking work, which handlers should use rather than
    /// `spawn_blocking` ([`crate::CommandInput::blocking`] hands it to them).
    pub fn blocking_pool(&self) -> &BlockingPool {
        &self.shared.resources.blocking
    }

    /// A reactor for one exchange; the client accepts `accepts` (identity when empty).
    pub fn new_reactor(&self, full_duplex: bool, accepts: &[String]) -> ServerReactor {
        let config = if full_duplex {
            &self.shared.full
        } else {
            &self.shared.half
        };
        let mut reactor =
            ServerReactor::with_profiles(Arc::clone(config), self.config().profiles().clone());
        if !accepts.is_empty() {
            reactor.set_peer_accepts(accepts);
        }
        reactor
    }

    /// Frames decoded from `reader` with the configured payload limit.
    pub fn frames<R>(&self, reader: R) -> FrameInput
    where
        R: tokio::io::AsyncRead + Send + 'static,
    {
        self.frames_of_length(reader, None)
    }

    /// [`Self::frames`] of an input whose length may be known (an HTTP body's
    /// `Content-Length`): a short one gets a read buffer of its size, not of 8 KiB (an
    /// allocation too large for the allocator's fast path, for every small request).
    pub fn frames_of_length<R>(&self, reader: R, length: Option<u64>) -> FrameInput
    where
        R: tokio::io::AsyncRead + Send + 'static,
    {
        let codec = FrameCodec::with_max_payload_len(self.config().reactor().max_frame_payload());
        match length {
            Some(length) if length < READ_BUFFER as u64 => {
                // At least one byte: an empty buffer cannot tell the end of the input.
                let capacity = usize::try_from(length).map_or(READ_BUFFER, |n| n.max(1));
                Box::pin(FramedRead::with_capacity(reader, codec, capacity))
            }
            _ => Box::pin(FramedRead::new(reader, codec)),
        }
    }

    /// [`Self::frames`] of an input that has already arrived whole (a short HTTP body
    /// taken in one piece): decoded as it is read, with no reader, no read buffer and
    /// no task wake-up between frames, and the same frames and errors as
    /// [`Self::frames`] would give for it. The bytes are copied into a buffer of their
    /// own, so that the payloads, which are slices of it, do not keep the transport's
    /// read buffer alive (which no budget counts).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use futures_util::StreamExt;
    /// use hgframe_engine::{EngineConfig, Registry, Server};
    /// let server = Server::new(Registry::new(), EngineConfig::default()).unwrap();
    /// // One frame header announcing a 3-byte payload, cut after one byte.
    /// let mut frames = server.frames_of_whole(&[3, 0, 0, 1, 0, 1, 0, 0x10, b'a']);
    /// assert!(frames.next().await.unwrap().is_err(), "truncated");
    /// assert!(frames.next().await.is_none());
    /// # });
    /// ```
    pub fn frames_of_whole(&self, input: &[u8]) -> FrameInput {
        let codec = FrameCodec::with_max_payload_len(self.config().reactor().max_frame_payload());
        Box::pin(futures_util::stream::iter(WholeInput {
            codec,
            buf: BytesMut::from(input),
            state: WholeState::Frames,
        }))
    }

    /// Starts an exchange on a task of its own: it reads `input` and answers with
    /// `reactor` (from [`Self::new_reactor`]), running the commands `scope` allows for
    /// `caller` (whom its handlers see).
    pub fn start(
        &self,
        reactor: ServerReactor,
        scope: Scope,
        caller: Caller,
        input: FrameInput,
        span: tracing::Span,
    ) -> Running {
        let (run, output) = self.prepare(reactor, scope, caller, input, span);
        Running {
            output: output.into_receiver(),
            done: tokio::spawn(run),
        }
    }

    /// The exchange [`Self::start`] would run, not started: its future and its output.
    /// For a transport that drives it itself for a while before it spawns it (a
    /// half-duplex HTTP exchange runs inside the request's service future until its
    /// response starts, which saves small exchanges a hand-off between threads). Until
    /// spawned, it advances (and its clocks run) only while polled. Its output queue is
    /// held open by [`Output`] until the transport either spawns it (turn the output
    /// into a receiver first: [`Output::into_receiver`]) or sees its future end (then
    /// [`Output::recycle`] keeps the queue for the next exchange).
    pub fn prepare(
        &self,
        reactor: ServerReactor,
        scope: Scope,
        caller: Caller,
        input: FrameInput,
        span: tracing::Span,
    ) -> (ExchangeFuture, Output) {
        let full_duplex = !reactor.config().defer_output();
        let (tx, output) = self.shared.outputs.take();
        let exchange = Exchange::new(
            reactor,
            Arc::clone(&self.shared.registry),
            Arc::clone(&self.shared.config),
            self.shared.resources.clone(),
            scope,
            ExchangeStats::new(caller.transport(), full_duplex),
            Arc::new(caller),
        );
        (Box::pin(exchange.run(input, tx).instrument(span)), output)
    }
}

/// The frames of an input that is all there ([`Server::frames_of_whole`]), decoded as
/// [`FramedRead`] decodes a reader that then ends: whole frames first, then what the
/// end of the input makes of the rest (a truncated frame is an error), nothing after
/// an error.
struct WholeInput {
    codec: FrameCodec,
    buf: BytesMut,
    state: WholeState,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WholeState {
    Frames,
    End,
    Done,
}

impl Iterator for WholeInput {
    type Item = Result<hgframe_wire::Frame, hgframe_wire::codec::CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        use tokio_util::codec::Decoder;
        loop {
            let decoded = match self.state {
                WholeState::Frames => self.codec.decode(&mut self.buf),
                WholeState::End => self.codec.decode_eof(&mut self.buf),
                WholeState::Done => return None,
            };
            match decoded {
                Ok(Some(frame)) => return Some(Ok(frame)),
                Ok(None) if self.state == WholeState::Frames => self.state = WholeState::End,
                Ok(None) => {
                    self.state = WholeState::Done;
                    return None;
                }
                Err(e) => {
                    self.state = WholeState::Done;
                    return Some(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::Scope;
    use crate::output::FrameInput;
    use crate::stats::Transport;
    use crate::{CommandError, CommandInput, Permission, Responder};
    use hgframe_wire::build::{command_frames, FrameTarget};
    use hgframe_wire::{RequestId, StreamFlags, StreamId};

    async fn echo(mut input: CommandInput, mut out: Responder) -> Result<(), CommandError> {
        if let Some(mut data) = input.take_data() {
            while let Some(piece) = data.chunk().await? {
                out.write(piece).await?;
            }
        }
        Ok(())
    }

    fn echo_input() -> FrameInput {
        let target = FrameTarget::new(RequestId(1), StreamId(1));
        let mut frames = command_frames(target, b"echo", [], Some(&b"abc"[..])).unwrap();
        frames[0] = frames[0]
            .clone()
            .with_stream_flags(StreamFlags::STREAM_BEGIN);
        Box::pin(futures_util::stream::iter(frames.into_iter().map(Ok)))
    }

    fn prepare(server: &Server) -> (ExchangeFuture, Output) {
        let scope = Scope::Request {
            permission: Permission::ReadOnly,
            command: None,
        };
        server.prepare(
            server.new_reactor(false, &[]),
            scope,
            Caller::new(Transport::Http1),
            echo_input(),
            tracing::Span::none(),
        )
    }

    #[tokio::test]
    async fn the_next_exchange_reuses_the_report_queue_of_one_that_ended() {
        let mut registry = Registry::new();
        registry.register("echo", Permission::ReadOnly, echo);
        let server = Server::new(registry, EngineConfig::default()).unwrap();
        let spares = &server.shared.resources.spares;
        assert_eq!(spares.len(), 0);
        let (run, mut output) = prepare(&server);
        let stats = run.await;
        assert!(!stats.outcome.is_abort());
        assert!(output.try_recv().is_some());
        output.recycle();
        assert_eq!(spares.len(), 1, "the queue was given back");
        let (run, _output) = prepare(&server);
        assert_eq!(spares.len(), 0, "the next exchange took it");
        run.await;
        assert_eq!(spares.len(), 1);
    }

    #[tokio::test]
    async fn a_command_answered_at_once_takes_one_turn_of_the_exchange() {
        let mut registry = Registry::new();
        registry.register("echo", Permission::ReadOnly, echo);
        let server = Server::new(registry, EngineConfig::default()).unwrap();
        let (run, mut output) = prepare(&server);
        let stats = run.await;
        assert_eq!(stats.outcome, crate::Outcome::Completed);
        // Read, run and answered in the turn that read it: its handler is polled as
        // soon as it starts, not in a turn of its own.
        assert_eq!(stats.turns, 1);
        let answer = output.try_recv().unwrap().unwrap();
        assert!(answer.windows(3).any(|w| w == b"abc"), "{answer:?}");
    }

    #[tokio::test]
    async fn an_output_queue_comes_back_only_once_its_exchange_ended_and_empty() {
        let mut registry = Registry::new();
        registry.register("echo", Permission::ReadOnly, echo);
        let server = Server::new(registry, EngineConfig::default()).unwrap();
        let outputs = &server.shared.outputs;
        // Given back while its exchange could still send: not kept.
        let (run, output) = prepare(&server);
        output.recycle();
        assert_eq!(outputs.len(), 0);
        drop(run);
        // Ended, its answer left unread: kept, emptied.
        let (run, output) = prepare(&server);
        run.await;
        output.recycle();
        assert_eq!(outputs.len(), 1);
        let (run, mut output) = prepare(&server);
        assert_eq!(outputs.len(), 0, "the next exchange took it");
        assert!(
            output.try_recv().is_none(),
            "nothing of the exchange before"
        );
        run.await;
        let answer = output.try_recv().unwrap().unwrap();
        assert!(answer.windows(3).any(|w| w == b"abc"), "{answer:?}");
        assert!(output.try_recv().is_none(), "one chunk: its own answer");
        // A spawned exchange's output is a plain queue, which ends with it.
        let (run, output) = prepare(&server);
        let mut rx = output.into_receiver();
        tokio::spawn(run);
        assert!(rx.recv().await.is_some());
        assert!(rx.recv().await.is_none());
        assert_eq!(outputs.len(), 0);
    }

    /// What a frame input gives, frames and errors (as text), to the end.
    fn drain(input: FrameInput) -> Vec<Result<hgframe_wire::Frame, String>> {
        use futures_util::StreamExt;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(input.map(|item| item.map_err(|e| e.to_string())).collect())
    }

    proptest::proptest! {
        /// Valid frames, cut anywhere and with any byte changed (a length, a type), or
        /// random bytes: the whole input gives exactly what a reader of it gives.
        #[test]
        fn a_whole_input_gives_what_a_reader_of_it_gives(
            payloads in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..40), 0..6),
            cut in proptest::num::usize::ANY,
            flip in proptest::option::of((proptest::num::usize::ANY, proptest::num::u8::ANY)),
            noise in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            use_noise in proptest::bool::ANY,
        ) {
            let mut config = EngineConfig::default();
            // Small enough that a changed length byte can go over it.
            config.reactor_mut().set_max_frame_payload(32);
            let server = Server::new(Registry::new(), config).unwrap();
            let bytes: Vec<u8> = if use_noise {
                noise
            } else {
                let mut out = BytesMut::new();
                for (i, payload) in payloads.iter().enumerate() {
                    let target = FrameTarget::new(RequestId(1 + 2 * i as u16), StreamId(1));
                    for frame in command_frames(target, b"echo", [], Some(&payload[..])).unwrap() {
                        frame.encode(&mut out);
                    }
                }
                let mut bytes = out.to_vec();
                if let Some((at, byte)) = flip {
                    if !bytes.is_empty() {
                        let at = at % bytes.len();
                        bytes[at] = byte;
                    }
                }
                let keep = if bytes.is_empty() { 0 } else { cut % (bytes.len() + 1) };
                bytes.truncate(keep);
                bytes
            };
            let whole = drain(server.frames_of_whole(&bytes));
            let read = drain(server.frames(std::io::Cursor::new(bytes)));
            proptest::prop_assert_eq!(whole, read);
        }
    }

    #[tokio::test]
    async fn frames_of_a_known_length_are_read_whatever_the_length_said() {
        use futures_util::StreamExt;
        let server = Server::new(Registry::new(), EngineConfig::default()).unwrap();
        let target = FrameTarget::new(RequestId(1), StreamId(1));
        let data = vec![7u8; 3000];
        let frames = command_frames(target, b"echo", [], Some(&data[..])).unwrap();
        let mut bytes = BytesMut::new();
        for frame in &frames {
            frame.encode(&mut bytes);
        }
        let bytes = bytes.freeze();
        let exact = bytes.len() as u64;
        // Exact, too short (the buffer grows), none, and an empty input announced empty.
        for length in [Some(exact), Some(10), None] {
            let reader = std::io::Cursor::new(bytes.clone());
            let read: Vec<_> = server.frames_of_length(reader, length).collect().await;
            let read: Vec<_> = read.into_iter().map(Result::unwrap).collect();
            assert_eq!(read, frames, "length {length:?}");
        }
        let empty = std::io::Cursor::new(Vec::<u8>::new());
        assert!(server
            .frames_of_length(empty, Some(0))
            .next()
            .await
            .is_none());
    }
}
