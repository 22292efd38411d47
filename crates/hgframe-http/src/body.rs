//! The body of hgframe requests and responses: a short text, or frames taken from a
//! bounded queue that an exchange (or the client's driver) fills on its own task.
//!
//! hyper polls the body only when the connection can take more bytes, so a slow reader
//! leaves the queue full and the exchange waits (its writes pause); the exchange's own
//! timers run whether or not hyper polls. When the queue ends, the exchange's outcome
//! decides between a clean end and an abort (an exchange cut short must not look like a
//! complete response).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hgframe_engine::{
    Error, ErrorKind, ExchangeFuture, ExchangeStats, Output, OutputChunk, Running,
};
use http_body::{Frame, SizeHint};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The body of every response [`crate::HgFrameService`] produces (and of the
/// [`crate::Client`]'s requests).
#[derive(Debug)]
pub struct FrameBody {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Full(Option<Bytes>),
    Frames(mpsc::Receiver<OutputChunk>),
    Running(Exchange),
    Failed(Option<Error>),
}

/// An exchange running on its own task, and the queue it fills.
#[derive(Debug)]
struct Exchange {
    output: mpsc::Receiver<OutputChunk>,
    /// The task, until its end has been seen.
    done: Option<JoinHandle<ExchangeStats>>,
    /// Chunks taken before the body was handed to hyper, in order.
    held: std::collections::VecDeque<Bytes>,
}

impl Exchange {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<OutputChunk>> {
        if let Some(chunk) = self.held.pop_front() {
            return Poll::Ready(Some(Ok(chunk)));
        }
        match self.output.poll_recv(cx) {
            Poll::Ready(None) => {}
            other => return other,
        }
        // The queue ended: how the exchange did decides between an end and an abort.
        let Some(done) = self.done.as_mut() else {
            return Poll::Ready(None);
        };
        let ended = std::task::ready!(Pin::new(done).poll(cx));
        self.done = None;
        Poll::Ready(abort_for(ended).map(Err))
    }
}

/// The error that must abort a response whose exchange ended this way, if any: one cut
/// short must not look complete to the client.
fn abort_for(ended: Result<ExchangeStats, tokio::task::JoinError>) -> Option<Error> {
    match ended {
        Ok(stats) if stats.outcome.is_abort() => Some(Error::new(
            ErrorKind::Timeout,
            format!("the exchange was cut short: {:?}", stats.outcome),
        )),
        Ok(_) => None,
        Err(e) => Some(Error::closed(format!("the exchange task failed: {e}"))),
    }
}

impl FrameBody {
    /// Frames arriving through `rx`; the body ends when the sender is dropped.
    pub(crate) fn frames(rx: mpsc::Receiver<OutputChunk>) -> Self {
        Self {
            kind: Kind::Frames(rx),
        }
    }

    /// The output of a running exchange.
    pub(crate) fn running(running: Running) -> Self {
        Self {
            kind: Kind::Running(Exchange {
                output: running.output,
                done: Some(running.done),
                held: std::collections::VecDeque::new(),
            }),
        }
    }

    /// A half-duplex exchange's body: the exchange is driven here, inside the request's
    /// service future (hyper polls it; nothing is written yet), until its output has
    /// started: its first chunk and what follows it (the next chunk, or its end). An
    /// exchange over by then (most small ones) never needed a task, and its response
    /// leaves whole, with an exact length (and its output queue serves the next
    /// exchange); a longer one goes on on a task of its own, so that its clocks run
    /// whatever hyper polls once the response is being written.
    pub(crate) async fn half_duplex(mut run: ExchangeFuture, mut output: Output) -> Self {
        let mut chunks = Taken::default();
        let mut ended = None;
        while ended.is_none() && chunks.len() < 2 {
            tokio::select! {
                biased;
                chunk = output.recv() => match chunk {
                    Some(Ok(chunk)) => chunks.push(chunk),
                    Some(Err(e)) => return Self { kind: Kind::Failed(Some(e)) },
                    // Not while the queue is held open; the exchange's end is its
                    // future's.
                    None => ended = Some((&mut run).await),
                },
                stats = &mut run => ended = Some(stats),
            }
        }
        let kind = match ended {
            Some(stats) => {
                // Whatever it sent before it ended is queued.
                while let Some(chunk) = output.try_recv() {
                    match chunk {
                        Ok(chunk) => chunks.push(chunk),
                        Err(e) => {
                            return Self {
                                kind: Kind::Failed(Some(e)),
                            }
                        }
                    }
                }
                output.recycle();
                match abort_for(Ok(stats)) {
                    Some(e) => Kind::Failed(Some(e)),
                    None => Kind::Full(chunks.into_whole()),
                }
            }
            None => Kind::Running(Exchange {
                // Before the spawn: its end must end the queue.
                output: output.into_receiver(),
                done: Some(tokio::spawn(run)),
                held: chunks.into_held(),
            }),
        };
        Self { kind }
    }
}

/// The chunks a half-duplex exchange gave before its response started: most small
/// exchanges give one, which needs no list (an allocation per request).
#[derive(Default)]
struct Taken {
    first: Option<Bytes>,
    more: Vec<Bytes>,
}

impl Taken {
    fn push(&mut self, chunk: Bytes) {
        match self.first {
            None => self.first = Some(chunk),
            Some(_) => self.more.push(chunk),
        }
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.len()
    }

    /// All of them in one piece (`None`: there were none).
    fn into_whole(self) -> Option<Bytes> {
        let first = self.first?;
        if self.more.is_empty() {
            return Some(first);
        }
        let mut all =
            Vec::with_capacity(self.more.iter().map(Bytes::len).sum::<usize>() + first.len());
        all.extend_from_slice(&first);
        for chunk in &self.more {
            all.extend_from_slice(chunk);
        }
        Some(all.into())
    }

    /// In order, for the body to give first.
    fn into_held(self) -> std::collections::VecDeque<Bytes> {
        self.first.into_iter().chain(self.more).collect()
    }
}

impl From<Bytes> for FrameBody {
    fn from(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
        }
    }
}

impl http_body::Body for FrameBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let chunk = match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(Ok)),
            Kind::Frames(rx) => rx.poll_recv(cx),
            Kind::Running(exchange) => exchange.poll_chunk(cx),
            Kind::Failed(e) => Poll::Ready(e.take().map(Err)),
        };
        chunk.map(|c| c.map(|c| c.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Failed(e) => e.is_none(),
            Kind::Frames(_) | Kind::Running(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Failed(_) | Kind::Frames(_) | Kind::Running(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn frames_body_yields_chunks_then_ends() {
        let (tx, rx) = mpsc::channel(2);
        let body = FrameBody::frames(rx);
        tx.send(Ok(Bytes::from("ab"))).await.unwrap();
        tx.send(Ok(Bytes::from("cd"))).await.unwrap();
        drop(tx);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcd");
    }

    #[tokio::test]
    async fn an_aborted_exchange_is_a_body_error() {
        let (tx, rx) = mpsc::channel(2);
        let body = FrameBody::frames(rx);
        tx.send(Ok(Bytes::from("ab"))).await.unwrap();
        tx.send(Err(Error::closed("gave up"))).await.unwrap();
        drop(tx);
        assert!(body.collect().await.is_err());
    }

    #[test]
    fn chunks_taken_come_whole_or_held_in_order() {
        let mut taken = Taken::default();
        assert_eq!(taken.len(), 0);
        assert!(Taken::default().into_whole().is_none());
        taken.push(Bytes::from("ab"));
        assert_eq!(taken.len(), 1);
        let mut three = Taken::default();
        for piece in ["ab", "cd", "e"] {
            three.push(Bytes::from(piece));
        }
        assert_eq!(three.len(), 3);
        assert_eq!(taken.into_whole().unwrap(), "ab");
        let held: Vec<Bytes> = three.into_held().into();
        assert_eq!(held, ["ab", "cd", "e"]);
        let mut again = Taken::default();
        for piece in ["ab", "cd", "e"] {
            again.push(Bytes::from(piece));
        }
        assert_eq!(again.into_whole().unwrap(), "abcde");
    }

    #[test]
    fn full_body_knows_its_size() {
        let body = FrameBody::from(Bytes::from("abc"));
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(3));
        assert!(http_body::Body::is_end_stream(&FrameBody::from(
            Bytes::new()
        )));
    }
}
