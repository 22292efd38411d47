//! The body of hgframe requests and responses: a short text, or frames pulled from a
//! bounded queue only when hyper polls for them.
//!
//! A server response body *drives* its exchange: each poll first lets the exchange
//! advance (read request frames, run handlers, encode output into the queue), then takes
//! a chunk from the queue. The exchange thus lives in the connection's task, and hyper
//! polls only when the connection can take more bytes, so a slow reader pauses the
//! exchange instead of making it buffer. A client request body is fed by the client's
//! driver task through the same kind of queue.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body::{Frame, SizeHint};
use tokio::sync::mpsc;

use crate::error::{Error, ErrorKind};
use crate::stats::{ExchangeStats, Outcome};

/// What the exchange puts in the queue: encoded frames, or the reason it gave up (the
/// connection is then aborted rather than ended cleanly, so the client cannot take a
/// cut-short response for a whole one).
pub(crate) type BodyChunk = Result<Bytes, Error>;

/// The body of every response [`crate::HgFrameService`] produces (and of the
/// [`crate::Client`]'s requests).
#[derive(Debug)]
pub struct FrameBody {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Frames(mpsc::Receiver<BodyChunk>),
    Driven(Driven),
    Failed(Option<Error>),
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Full(b) => f.debug_tuple("Full").field(b).finish(),
            Self::Frames(_) => f.write_str("Frames"),
            Self::Driven(d) => f
                .debug_struct("Driven")
                .field("running", &d.exchange.is_some())
                .finish(),
            Self::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

/// An exchange and the queue it fills, advanced by the polls of the body.
struct Driven {
    /// The exchange, until it ends.
    exchange: Option<BoxFuture<'static, ExchangeStats>>,
    rx: mpsc::Receiver<BodyChunk>,
    /// A chunk taken before the body was handed to hyper.
    held: Option<Bytes>,
}

impl Driven {
    /// Lets the exchange advance, then takes the next chunk.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<BodyChunk>> {
        if let Some(chunk) = self.held.take() {
            return Poll::Ready(Some(Ok(chunk)));
        }
        if let Some(running) = &mut self.exchange {
            if let Poll::Ready(stats) = running.as_mut().poll(cx) {
                self.exchange = None;
                if stats.outcome == Outcome::TimedOut {
                    // Abort the response rather than end it: cut short, it must not look
                    // complete.
                    return Poll::Ready(Some(Err(Error::new(
                        ErrorKind::Timeout,
                        "the exchange made no progress within the idle timeout",
                    ))));
                }
            }
        }
        self.rx.poll_recv(cx)
    }
}

impl FrameBody {
    /// Frames arriving through `rx`; the body ends when the sender is dropped.
    pub(crate) fn frames(rx: mpsc::Receiver<BodyChunk>) -> Self {
        Self {
            kind: Kind::Frames(rx),
        }
    }

    /// The frames `exchange` sends through the sender of `rx`, driven by the polls.
    pub(crate) fn driven<F>(exchange: F, rx: mpsc::Receiver<BodyChunk>) -> Self
    where
        F: Future<Output = ExchangeStats> + Send + 'static,
    {
        Self {
            kind: Kind::Driven(Driven {
                exchange: Some(Box::pin(exchange)),
                rx,
                held: None,
            }),
        }
    }

    /// Like [`FrameBody::driven`], but first runs the exchange until its first output
    /// (or its end), for a response that cannot start before the request has ended
    /// anyway (half duplex). The response head then leaves with the first bytes, in one
    /// write, and a response complete by then gets an exact length.
    pub(crate) async fn driven_from_first<F>(exchange: F, rx: mpsc::Receiver<BodyChunk>) -> Self
    where
        F: Future<Output = ExchangeStats> + Send + 'static,
    {
        let mut driven = Driven {
            exchange: Some(Box::pin(exchange)),
            rx,
            held: None,
        };
        let first = std::future::poll_fn(|cx| driven.poll_chunk(cx)).await;
        let kind = match first {
            None => Kind::Full(None),
            Some(Err(e)) => Kind::Failed(Some(e)),
            Some(Ok(first)) if driven.exchange.is_none() => {
                // The exchange ended: everything it sent is queued.
                let mut whole = Vec::new();
                let mut failed = None;
                while let Ok(chunk) = driven.rx.try_recv() {
                    match chunk {
                        Ok(chunk) => whole.push(chunk),
                        Err(e) => failed = Some(e),
                    }
                }
                match failed {
                    Some(e) => Kind::Failed(Some(e)),
                    None if whole.is_empty() => Kind::Full(Some(first)),
                    None => {
                        let mut all = bytes::BytesMut::with_capacity(
                            first.len() + whole.iter().map(Bytes::len).sum::<usize>(),
                        );
                        all.extend_from_slice(&first);
                        for chunk in whole {
                            all.extend_from_slice(&chunk);
                        }
                        Kind::Full(Some(all.freeze()))
                    }
                }
            }
            Some(Ok(first)) => {
                driven.held = Some(first);
                Kind::Driven(driven)
            }
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
            Kind::Driven(driven) => driven.poll_chunk(cx),
            Kind::Failed(e) => Poll::Ready(e.take().map(Err)),
        };
        chunk.map(|c| c.map(|c| c.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Failed(e) => e.is_none(),
            Kind::Frames(_) | Kind::Driven(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Failed(_) | Kind::Frames(_) | Kind::Driven(_) => SizeHint::default(),
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
