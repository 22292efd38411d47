//! The one error type of the transports.
//!
//! It is opaque on purpose (as hyper's and h2's are): it wraps hyper, I/O and lower-layer
//! errors whose shape we do not promise. Ask it what happened with [`Error::kind`] and the
//! `is_*` accessors; print it for people.

use std::fmt;

/// What went wrong, in categories a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Connecting, reading or writing failed underneath (socket, pipe, child process).
    Io,
    /// The HTTP layer failed (hyper), or the server answered with an HTTP error status.
    Http,
    /// The peer broke the protocol: malformed frames, stream rules, a protocol
    /// `error-response`.
    Protocol,
    /// A configured time limit passed.
    Timeout,
    /// The exchange or connection ended before the answer was complete.
    Closed,
    /// The command failed on the server: an application `error-response`, whose
    /// message is [`Error::message`].
    Application,
    /// The caller asked for something impossible: a bad URL, a bad argument, a limit
    /// exceeded on our side.
    InvalidInput,
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            Self::Io => "i/o error",
            Self::Http => "http error",
            Self::Protocol => "protocol error",
            Self::Timeout => "timed out",
            Self::Application => "command failed",
            Self::Closed => "connection closed",
            Self::InvalidInput => "invalid input",
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An error of the HTTP or byte-stream transport.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: String,
    status: Option<http::StatusCode>,
    source: Option<BoxError>,
}

impl Error {
    /// An error of `kind` with a message for people.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                status: None,
                source: None,
            }),
        }
    }

    /// The same error, remembering what caused it.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner.source = Some(source.into());
        self
    }

    /// The server answered with an HTTP error status and a (text/plain) message.
    pub fn status(status: http::StatusCode, message: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorKind::Http, message);
        e.inner.status = Some(status);
        e
    }

    /// An I/O failure, with what was being done (a timeout is [`ErrorKind::Timeout`]).
    pub fn io(context: impl fmt::Display, e: std::io::Error) -> Self {
        let kind = if e.kind() == std::io::ErrorKind::TimedOut {
            ErrorKind::Timeout
        } else {
            ErrorKind::Io
        };
        Self::new(kind, format!("{context}: {e}")).with_source(e)
    }

    /// The peer broke the protocol.
    pub fn protocol(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Protocol, message)
    }

    /// The connection or exchange ended.
    pub fn closed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Closed, message)
    }

    /// Something given to the API cannot be used.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// The command failed (an application `error-response`).
    pub fn application(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Application, message)
    }

    /// The same kind, message and status, without the source (errors are not `Clone`
    /// because sources are not; this is for telling several waiters the same thing).
    pub fn duplicate(&self) -> Self {
        let mut e = Self::new(self.inner.kind, self.inner.message.clone());
        e.inner.status = self.inner.status;
        e
    }

    /// The category of the error.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The HTTP status the server answered with, when that was the error.
    pub fn http_status(&self) -> Option<http::StatusCode> {
        self.inner.status
    }

    /// The message, without the category prefix.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// Whether I/O failed underneath.
    pub fn is_io(&self) -> bool {
        self.kind() == ErrorKind::Io
    }

    /// Whether the HTTP layer failed or answered with an error status.
    pub fn is_http(&self) -> bool {
        self.kind() == ErrorKind::Http
    }

    /// Whether the peer broke the protocol.
    pub fn is_protocol(&self) -> bool {
        self.kind() == ErrorKind::Protocol
    }

    /// Whether the command failed on the server (an application error).
    pub fn is_application(&self) -> bool {
        self.kind() == ErrorKind::Application
    }

    /// Whether a time limit passed.
    pub fn is_timeout(&self) -> bool {
        self.kind() == ErrorKind::Timeout
    }

    /// Whether the exchange ended early.
    pub fn is_closed(&self) -> bool {
        self.kind() == ErrorKind::Closed
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind)
            .field("message", &self.inner.message);
        if let Some(status) = self.inner.status {
            d.field("status", &status);
        }
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inner.status {
            Some(status) => write!(
                f,
                "{} {}: {}",
                self.inner.kind.describe(),
                status,
                self.inner.message
            ),
            None => write!(f, "{}: {}", self.inner.kind.describe(), self.inner.message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_follow_the_kind() {
        let e = Error::status(http::StatusCode::NOT_FOUND, "unknown permission: xx");
        assert!(e.is_http());
        assert_eq!(e.http_status(), Some(http::StatusCode::NOT_FOUND));
        assert_eq!(
            e.to_string(),
            "http error 404 Not Found: unknown permission: xx"
        );
        let e = Error::io(
            "reading",
            std::io::Error::new(std::io::ErrorKind::TimedOut, "slow"),
        );
        assert!(e.is_timeout());
        assert!(std::error::Error::source(&e).is_some());
        assert!(Error::protocol("x").is_protocol());
        assert!(Error::closed("x").is_closed());
        assert_eq!(Error::invalid("x").kind(), ErrorKind::InvalidInput);
    }
}
