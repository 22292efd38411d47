//! A connection's requests: the service that counts them in flight, from the call
//! until the response body ends, and that body.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use hgframe_engine::PeerAddr;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tower::util::Oneshot;
use tower::ServiceExt;

use super::registry::Activity;
use crate::server::BoxError;

/// The service of one connection: counts its requests in flight, from the call until
/// the response body ends (or is dropped, or the service fails).
#[derive(Clone)]
pub(super) struct Tracked<S> {
    pub(super) inner: S,
    pub(super) activity: Arc<Activity>,
    /// Set when the connection drains: new requests are refused.
    pub(super) draining: Arc<AtomicBool>,
    /// The peer's address, given to every request as a [`PeerAddr`] extension.
    pub(super) peer: Option<std::net::SocketAddr>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
{
    type Response = Response<GuardBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S, B>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(PeerAddr(peer));
        }
        if self.draining.load(Ordering::Acquire) {
            // The request crossed the close (an h2 stream opened before the peer saw
            // the GOAWAY): refused unrun, so the client may safely retry it elsewhere.
            let mut refused = Response::new(GuardBody {
                inner: None,
                guard: None,
            });
            *refused.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            refused
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return TrackedFuture::Refused {
                response: Some(refused),
            };
        }
        let guard = InFlight::new(Arc::clone(&self.activity));
        TrackedFuture::Running {
            call: self.inner.clone().oneshot(request),
            guard: Some(guard),
        }
    }
}

pin_project! {
    /// The response of [`Tracked`]: refused at once, or the service's, its body given
    /// the request's [`InFlight`] (a named future: no allocation per request).
    #[project = TrackedProj]
    pub(crate) enum TrackedFuture<S, B>
    where
        S: tower::Service<Request<Incoming>, Response = Response<B>>,
    {
        Refused { response: Option<Response<GuardBody<B>>> },
        Running {
            #[pin]
            call: Oneshot<S, Request<Incoming>>,
            guard: Option<InFlight>,
        },
    }
}

impl<S, B> Future for TrackedFuture<S, B>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>>,
{
    type Output = Result<Response<GuardBody<B>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            // `None` only if polled again after it completed, which hyper does not do.
            TrackedProj::Refused { response } => response
                .take()
                .map_or(Poll::Pending, |r| Poll::Ready(Ok(r))),
            TrackedProj::Running { call, guard } => {
                let called = ready!(call.poll(cx));
                // Failed, the request ends here (with its guard).
                let guard = guard.take();
                Poll::Ready(called.map(|response| {
                    response.map(|body| GuardBody {
                        inner: Some(body),
                        guard,
                    })
                }))
            }
        }
    }
}

/// One request in flight on its connection's counter.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: Arc<Activity>) -> Self {
        activity.started();
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.ended();
    }
}

pin_project! {
    /// A response body that holds its request's [`InFlight`] until it ends or is dropped
    /// (without a body: the empty body of a refusal).
    pub(crate) struct GuardBody<B> {
        #[pin]
        inner: Option<B>,
        guard: Option<InFlight>,
    }
}

impl<B: Body> Body for GuardBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = match this.inner.as_pin_mut() {
            Some(inner) => inner.poll_frame(cx),
            None => Poll::Ready(None),
        };
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            *this.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().map_or(true, |b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}
