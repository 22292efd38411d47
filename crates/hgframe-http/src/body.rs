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
use hgframe_engine::{Error, ErrorKind, ExchangeStats, OutputChunk, Running};
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
    /// A chunk taken before the body was handed to hyper.
    held: Option<Bytes>,
}

impl Exchange {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<OutputChunk>> {
        if let Some(chunk) = self.held.take() {
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
                held: None,
            }),
        }
    }

    /// Like [`FrameBody::running`], but first waits for the exchange's first output and
    /// what follows it (the next chunk, or its end), for a response that cannot start
    /// before the request has ended anyway (half duplex). The response head then leaves
    /// with the first bytes, in one write, and a response of one chunk (most small
    /// exchanges) gets an exact length: no chunked encoding, no extra round of polls.
    pub(crate) async fn running_from_first(running: Running) -> Self {
        let mut exchange = Exchange {
            output: running.output,
            done: Some(running.done),
            held: None,
        };
        let first = std::future::poll_fn(|cx| exchange.poll_chunk(cx)).await;
        let kind = match first {
            None => Kind::Full(None),
            Some(Err(e)) => Kind::Failed(Some(e)),
            Some(Ok(first)) => match std::future::poll_fn(|cx| exchange.poll_chunk(cx)).await {
                // The end, clean (an abort would have been an error).
                None => Kind::Full(Some(first)),
                Some(Err(e)) => Kind::Failed(Some(e)),
                Some(Ok(second)) => {
                    let mut both = bytes::BytesMut::with_capacity(first.len() + second.len());
                    both.extend_from_slice(&first);
                    both.extend_from_slice(&second);
                    exchange.held = Some(both.freeze());
                    Kind::Running(exchange)
                }
            },
        };
        Self { kind }
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
    fn full_body_knows_its_size() {
        let body = FrameBody::from(Bytes::from("abc"));
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(3));
        assert!(http_body::Body::is_end_stream(&FrameBody::from(
            Bytes::new()
        )));
    }
}
