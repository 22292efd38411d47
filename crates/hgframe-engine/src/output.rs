//! What flows between an exchange and its transport: frames in, chunks of encoded frames
//! out.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use hgframe_wire::codec::CodecError;
use hgframe_wire::Frame;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::error::Error;

/// Frames read from some input, boxed so that every transport feeds the same exchange.
pub type FrameInput = Pin<Box<dyn Stream<Item = Result<Frame, CodecError>> + Send>>;

/// What an exchange puts in its output queue: encoded frames, or the reason it gave up
/// (the transport then aborts rather than ends cleanly, so the peer cannot take a
/// cut-short response for a whole one).
pub type OutputChunk = Result<Bytes, Error>;

/// Writes every chunk, flushing whenever the queue runs dry, then shuts the writer down.
/// An error chunk (the exchange gave up) shuts down without writing more.
pub(crate) async fn write_all_chunks<W>(mut rx: mpsc::Receiver<OutputChunk>, mut writer: W)
where
    W: AsyncWrite + Unpin,
{
    while let Some(chunk) = rx.recv().await {
        let Ok(chunk) = chunk else { break };
        if writer.write_all(&chunk).await.is_err() {
            // The peer is gone; dropping `rx` tells the exchange.
            return;
        }
        if rx.is_empty() && writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// Output queues of exchanges that ran to their end inside their transport's own
/// future, for the next ones: a tokio channel costs two allocations and about 1.5 k
/// instructions to make and drop, as much as a small exchange's handler.
#[derive(Debug)]
pub(crate) struct OutputSpares {
    queues: std::sync::Mutex<Vec<(mpsc::Sender<OutputChunk>, mpsc::Receiver<OutputChunk>)>>,
    capacity: usize,
}

/// Output queues kept at most (a few kilobytes each).
const MAX_OUTPUT_SPARES: usize = 64;

impl OutputSpares {
    /// None yet; new queues hold `capacity` chunks.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queues: std::sync::Mutex::new(Vec::new()),
            capacity,
        }
    }

    /// A queue for a new exchange: its sender, and its [`Output`].
    pub(crate) fn take(self: &std::sync::Arc<Self>) -> (mpsc::Sender<OutputChunk>, Output) {
        let spare = self.queues.lock().ok().and_then(|mut q| q.pop());
        let (keeper, rx) = spare.unwrap_or_else(|| mpsc::channel(self.capacity));
        let output = Output {
            rx,
            keeper: Some(keeper.clone()),
            spares: Some(std::sync::Arc::clone(self)),
        };
        (keeper, output)
    }

    fn give_back(&self, keeper: mpsc::Sender<OutputChunk>, mut rx: mpsc::Receiver<OutputChunk>) {
        // The exchange's sender is gone (it ended): nothing can be sent but through
        // `keeper`, and what is left would be read by nobody.
        let alone = keeper.strong_count() == 1 && keeper.weak_count() == 0;
        if !alone || rx.is_closed() || keeper.max_capacity() != self.capacity {
            return;
        }
        while rx.try_recv().is_ok() {}
        if let Ok(mut queues) = self.queues.lock() {
            if queues.len() < MAX_OUTPUT_SPARES {
                queues.push((keeper, rx));
            }
        }
    }

    /// Queues kept now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queues.lock().map_or(0, |q| q.len())
    }
}

/// The output of an exchange made by [`crate::Server::prepare`], for a transport that
/// drives the exchange itself for a while.
///
/// While the exchange is driven there, its queue is held open from this side too (so
/// that it can be reused): the end of the exchange is the end of its future, not of
/// the queue. Once its future is done, [`Self::recycle`] gives the queue back for the
/// next exchange; a transport that hands the exchange to a task of its own turns this
/// into a plain receiver first ([`Self::into_receiver`]), whose end is then the end of
/// the exchange.
#[derive(Debug)]
pub struct Output {
    rx: mpsc::Receiver<OutputChunk>,
    keeper: Option<mpsc::Sender<OutputChunk>>,
    spares: Option<std::sync::Arc<OutputSpares>>,
}

impl Output {
    /// The next chunk, when there is one. `None` only after [`Self::into_receiver`]
    /// would end, never while the queue is held open: wait for the exchange's future.
    pub async fn recv(&mut self) -> Option<OutputChunk> {
        self.rx.recv().await
    }

    /// The next chunk if one is queued now.
    pub fn try_recv(&mut self) -> Option<OutputChunk> {
        self.rx.try_recv().ok()
    }

    /// The queue as a plain receiver, which ends when the exchange drops its side (no
    /// longer held open, and not reused).
    pub fn into_receiver(mut self) -> mpsc::Receiver<OutputChunk> {
        self.keeper = None;
        self.spares = None;
        // `Output` has no drop of its own to run: the fields move out.
        let Self { rx, .. } = self;
        rx
    }

    /// Gives the queue back for the next exchange, once this one's future has ended
    /// (before that, or if anything else can still send into it, it is dropped
    /// instead). Chunks still in it are dropped: read them first.
    pub fn recycle(self) {
        let Self { rx, keeper, spares } = self;
        if let (Some(keeper), Some(spares)) = (keeper, spares) {
            spares.give_back(keeper, rx);
        }
    }
}
