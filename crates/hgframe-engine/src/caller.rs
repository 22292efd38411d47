//! Who calls: what a handler may know of the peer behind a command.
//!
//! Every exchange has one [`Caller`], shared by the commands it runs
//! ([`crate::CommandInput::caller`]): the transport, the peer's address when the
//! transport knows it, and over HTTP the request's headers and extensions. The
//! [`Principal`] is the identity an authentication layer established: middleware (a
//! tower layer in front of the HTTP service) checks the credentials and inserts a
//! `Principal` into the request's extensions; the service moves it here.
//!
//! An exchange belongs to one caller, so its compression contexts never mix the data of
//! two principals (docs/engine.md, "Who calls").

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Extensions, HeaderMap};

use crate::stats::Transport;

/// An authenticated identity, set by the layer that checked the credentials.
///
/// ```
/// use hgframe_engine::Principal;
/// let alice = Principal::new("alice");
/// assert_eq!(alice.name(), "alice");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal(Arc<str>);

impl Principal {
    /// The identity named `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self(name.into())
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.0
    }
}

/// The peer's address, which the HTTP server puts in each request's extensions (for
/// middleware, as axum's `ConnectInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The peer of one exchange, as its commands see it.
///
/// ```
/// use hgframe_engine::{Caller, Principal, Transport};
/// let mut extensions = http::Extensions::new();
/// extensions.insert(Principal::new("alice"));
/// let caller = Caller::new(Transport::Http2).with_extensions(extensions);
/// assert_eq!(caller.principal().map(Principal::name), Some("alice"));
/// assert!(caller.peer().is_none());
/// ```
pub struct Caller {
    transport: Transport,
    peer: Option<SocketAddr>,
    headers: HeaderMap,
    extensions: Extensions,
    principal: Option<Principal>,
}

/// Header values are left out: they carry credentials (`Authorization`, cookies), and a
/// caller is the kind of value that ends up in a log.
impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&str> = self.headers.keys().map(http::HeaderName::as_str).collect();
        f.debug_struct("Caller")
            .field("transport", &self.transport)
            .field("peer", &self.peer)
            .field("headers", &headers)
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl Caller {
    /// A caller over `transport`, of which nothing else is known.
    pub fn new(transport: Transport) -> Self {
        Self {
            transport,
            peer: None,
            headers: HeaderMap::new(),
            extensions: Extensions::new(),
            principal: None,
        }
    }

    /// With the peer's address.
    pub fn with_peer(mut self, peer: SocketAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    /// With the HTTP request's headers.
    pub fn with_headers(mut self, headers: HeaderMap) -> Self {
        self.headers = headers;
        self
    }

    /// With the HTTP request's extensions: a [`Principal`] and a [`PeerAddr`] among them
    /// become the caller's principal and address.
    pub fn with_extensions(mut self, mut extensions: Extensions) -> Self {
        if let Some(principal) = extensions.remove::<Principal>() {
            self.principal = Some(principal);
        }
        if let Some(PeerAddr(peer)) = extensions.get::<PeerAddr>() {
            self.peer = Some(*peer);
        }
        self.extensions = extensions;
        self
    }

    /// With an authenticated principal.
    pub fn with_principal(mut self, principal: Principal) -> Self {
        self.principal = Some(principal);
        self
    }

    /// The transport the exchange runs on.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The peer's address, when the transport knows it.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The HTTP request's headers (empty on a byte stream).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The HTTP request's extensions, as middleware left them (the principal taken out).
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// The authenticated identity, if an authentication layer set one.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_give_the_principal_and_the_peer_address() {
        let mut extensions = Extensions::new();
        extensions.insert(Principal::new("bob"));
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        extensions.insert(PeerAddr(addr));
        extensions.insert(7u32);
        let caller = Caller::new(Transport::Http1).with_extensions(extensions);
        assert_eq!(caller.principal(), Some(&Principal::new("bob")));
        assert_eq!(caller.peer(), Some(addr));
        assert_eq!(caller.extensions().get::<u32>(), Some(&7));
        assert!(caller.extensions().get::<Principal>().is_none());
        assert_eq!(caller.transport(), Transport::Http1);
    }

    #[test]
    fn debug_output_names_headers_but_never_shows_their_values() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            "Bearer s3cret".parse().unwrap(),
        );
        let caller = Caller::new(Transport::Http2).with_headers(headers);
        let shown = format!("{caller:?}");
        assert!(shown.contains("authorization"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
