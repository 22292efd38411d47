//! Client-side counters of one exchange (a byte-stream connection, an HTTP exchange, a
//! session): what the client sent and received, on the wire and decoded, and the
//! content-encoding profile the server chose.
//!
//! The driver updates them with relaxed atomics as it goes (they are statistics, not
//! synchronisation); [`ClientStats`] is a snapshot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// A snapshot of a client's counters ([`crate::Session::stats`],
/// [`crate::bytestream::Connection::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// The content-encoding profile of the server's responses (`identity` until the
    /// server announces another).
    pub profile: String,
    /// Commands issued.
    pub calls: u64,
    /// Calls that failed (each counted once, whatever ended it: an error response, a
    /// deadline, the connection ending).
    pub errors: u64,
    /// Bytes of frames sent (headers included), after content encoding.
    pub request_wire_bytes: u64,
    /// Bytes of command names, arguments and data handed to the reactor, before
    /// encoding.
    pub request_decoded_bytes: u64,
    /// Bytes of frames received (headers included), as on the wire.
    pub response_wire_bytes: u64,
    /// Frames received.
    pub response_frames: u64,
    /// Bytes of response data after content decoding.
    pub response_decoded_bytes: u64,
}

/// The live counters, shared by the driver and the handles that report them.
#[derive(Debug, Default)]
pub struct Counters {
    profile: Mutex<Option<String>>,
    calls: AtomicU64,
    errors: AtomicU64,
    request_wire: AtomicU64,
    request_decoded: AtomicU64,
    response_wire: AtomicU64,
    response_frames: AtomicU64,
    response_decoded: AtomicU64,
}

fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn set_profile(&self, profile: &str) {
        let mut held = self.profile.lock().unwrap_or_else(PoisonError::into_inner);
        if held.as_deref() != Some(profile) {
            *held = Some(profile.to_owned());
        }
    }

    pub(crate) fn call(&self) {
        add(&self.calls, 1);
    }

    pub(crate) fn error(&self) {
        add(&self.errors, 1);
    }

    pub(crate) fn sent(&self, wire: usize) {
        add(&self.request_wire, wire);
    }

    pub(crate) fn sent_decoded(&self, bytes: usize) {
        add(&self.request_decoded, bytes);
    }

    pub(crate) fn received(&self, wire: usize) {
        add(&self.response_frames, 1);
        add(&self.response_wire, wire);
    }

    pub(crate) fn received_decoded(&self, bytes: usize) {
        add(&self.response_decoded, bytes);
    }

    /// A snapshot.
    pub fn snapshot(&self) -> ClientStats {
        let profile = self
            .profile
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| hgframe_reactor::IDENTITY.to_owned());
        ClientStats {
            profile,
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            request_wire_bytes: self.request_wire.load(Ordering::Relaxed),
            request_decoded_bytes: self.request_decoded.load(Ordering::Relaxed),
            response_wire_bytes: self.response_wire.load(Ordering::Relaxed),
            response_frames: self.response_frames.load(Ordering::Relaxed),
            response_decoded_bytes: self.response_decoded.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_is_identity_until_one_is_announced() {
        let c = Counters::default();
        assert_eq!(c.snapshot().profile, "identity");
        c.set_profile("zstd-8mb");
        c.call();
        c.error();
        c.sent(10);
        c.received(20);
        c.received_decoded(30);
        let s = c.snapshot();
        assert_eq!(s.profile, "zstd-8mb");
        assert_eq!((s.calls, s.errors, s.response_frames), (1, 1, 1));
        assert_eq!(
            (
                s.request_wire_bytes,
                s.response_wire_bytes,
                s.response_decoded_bytes
            ),
            (10, 20, 30)
        );
    }
}
