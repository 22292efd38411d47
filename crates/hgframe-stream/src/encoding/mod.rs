//! Content encodings: how a stream's payloads are transformed on the wire.
//!
//! A *profile* ([`Profile`]) is a named encoding (docs/protocol.md): `identity` (no change,
//! always supported), with the `zstd` feature, `zstd-8mb` (Zstandard with at most an
//! 8 MiB window), and with the `deflate` feature, `deflate` (raw deflate, sync-flushed,
//! the `00 00 ff ff` tail stripped). An application can register its own in [`Profiles`].
//!
//! Encoders and decoders are sans-IO: buffer in, buffer out. A [`ContentEncoder`] keeps
//! one context for the whole stream and *flushes* at every frame boundary, so that
//! everything it has written so far decodes completely; a [`ContentDecoder`] takes a
//! stream's payloads in order and never writes more than the cap it is given.
//!
//! Profiles are trait objects (`Arc<dyn Profile>`), so a program that registers only
//! `identity` does not link the zstd code it does not use.

#[cfg(feature = "deflate")]
mod deflate;
mod identity;
mod negotiate;
#[cfg(feature = "zstd")]
mod pool;
#[cfg(feature = "zstd")]
mod zstd;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

#[cfg(feature = "deflate")]
pub use deflate::{Deflate, DeflateDecoder, DeflateEncoder, DEFLATE, SYNC_TAIL};
pub use identity::{Identity, IDENTITY};
pub use negotiate::{parse_accept_list, MAX_ACCEPT_ENTRIES};
#[cfg(feature = "zstd")]
pub use pool::{
    PoolLimitError, PoolLimits, PoolStats, ZstdContextPool, DEFAULT_MAX_CONTEXT_BYTES,
    DEFAULT_MAX_IDLE, MAX_CONTEXT_BYTES_LIMIT, MAX_IDLE_LIMIT,
};
#[cfg(feature = "zstd")]
pub use zstd::{Zstd8Mb, ZstdDecoder, ZstdEncoder, WINDOW_LOG_MAX, ZSTD_8MB};

/// Level of a new stream's encoder unless told otherwise (zstd's default, 3).
pub const DEFAULT_LEVEL: i32 = 3;

/// What went wrong inside an encoder or decoder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodingError {
    /// The decoded output would exceed the cap.
    #[error("decoded output exceeds {limit} bytes")]
    TooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
    /// The input is not valid for the profile (corrupt data, a window larger than the
    /// profile allows, a checksum mismatch).
    #[error("{message}")]
    Corrupt {
        /// What the decoder said.
        message: String,
    },
    /// A compression level the profile does not have.
    #[error("level {level} is outside {min}..={max}")]
    LevelOutOfRange {
        /// The level asked for.
        level: i32,
        /// The lowest level.
        min: i32,
        /// The highest level.
        max: i32,
    },
    /// `stream-settings` parameters the profile does not understand.
    #[error("profile `{profile}` takes no parameters, got {len} bytes")]
    UnexpectedParameters {
        /// The profile.
        profile: String,
        /// Length of the parameters received.
        len: usize,
    },
    /// Pre-compressed data the profile cannot pass through as it is.
    #[error("pre-compressed data refused: {reason}")]
    Precompressed {
        /// Why.
        reason: String,
    },
    /// The compressor itself failed (out of memory, for instance).
    #[error("compressor failed: {message}")]
    Compressor {
        /// What the compressor said.
        message: String,
    },
}

/// The compressing half of a profile: one per outgoing stream, alive as long as the
/// stream. `Send`, so a stream can move to a worker thread.
pub trait ContentEncoder: Send {
    /// Encodes all of `input`, appending to `out`, then flushes: once the receiver has
    /// everything this encoder has written so far, it can decode all the input given so
    /// far. The context (history) is kept for the next call.
    fn encode_flush(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), EncodingError>;

    /// An upper bound of what [`ContentEncoder::encode_flush`] appends for an input of
    /// `input_len` bytes, whatever the data and the encoder's state (used to reserve the
    /// output once, and by [`crate::OutgoingStream`] to size each flush so that its
    /// output always fits one frame). It must not decrease as `input_len` grows. It may
    /// depend on the level: the stream asks again after [`ContentEncoder::set_level`].
    fn max_encoded_len(&self, input_len: usize) -> usize;

    /// Changes the level used from the next [`ContentEncoder::encode_flush`] on. The
    /// decoder needs no notice.
    fn set_level(&mut self, level: i32) -> Result<(), EncodingError>;

    /// The level in use (or about to be used, after [`ContentEncoder::set_level`]).
    fn level(&self) -> i32;

    /// A fast path for a large input: encodes all of `input` in one pass over contiguous
    /// memory, appending to `out`, and appends to `boundaries` the places where a frame
    /// may end so that everything before it decodes, each with a bound on the bytes
    /// decoded up to there (offsets relative to `out`'s length on entry, in order, the
    /// last one at the end of the output). No boundary may be more than
    /// `max_decoded_per_frame` decoded bytes after the previous one.
    ///
    /// This may end the current unit (the input then starts without history). Returns
    /// `Ok(false)`, having written nothing, when the encoder has no such path or cannot
    /// honour `max_decoded_per_frame`; the default does that.
    fn encode_one_pass(
        &mut self,
        input: &[u8],
        max_decoded_per_frame: usize,
        out: &mut Vec<u8>,
        boundaries: &mut Vec<Boundary>,
    ) -> Result<bool, EncodingError> {
        let _ = (input, max_decoded_per_frame, out, boundaries);
        Ok(false)
    }

    /// Closes the current unit of encoded data (for zstd: ends the frame), appending its
    /// epilogue to `out`, so that independently encoded data in the profile's format may
    /// follow (see [`Profile::check_precompressed`]). Later input starts a new unit,
    /// without the history of the previous one.
    fn end_unit(&mut self, out: &mut Vec<u8>) -> Result<(), EncodingError>;
}

/// A place where a frame may end in the output of [`ContentEncoder::encode_one_pass`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boundary {
    /// Offset just past the last encoded byte before the boundary.
    pub encoded_end: usize,
    /// At most this many bytes decode from the output up to the boundary.
    pub decoded_max: usize,
}

/// The decompressing half of a profile: one per incoming stream with that profile.
pub trait ContentDecoder: Send {
    /// Decodes one frame's payload (the stream's payloads come in order), appending the
    /// decoded bytes to `out`. Fails with [`EncodingError::TooLarge`] rather than append
    /// more than `max_out` bytes, and never reserves memory from a size the input claims.
    fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_out: usize,
    ) -> Result<(), EncodingError>;
}

/// A named content encoding.
pub trait Profile: Send + Sync + fmt::Debug {
    /// The name in `stream-settings` and in accept lists (ASCII, at most 255 bytes).
    fn name(&self) -> &str;

    /// Whether this is `identity`: a stream with it sends no `stream-settings` frame and
    /// never sets `encoded`.
    fn is_identity(&self) -> bool {
        false
    }

    /// The profile-defined bytes that follow the name in `stream-settings`.
    fn settings_parameters(&self, settings: &EncodingSettings) -> Bytes {
        let _ = settings;
        Bytes::new()
    }

    /// A new encoding context.
    fn encoder(
        &self,
        settings: &EncodingSettings,
    ) -> Result<Box<dyn ContentEncoder>, EncodingError>;

    /// A new decoding context for a stream whose `stream-settings` carried `parameters`.
    fn decoder(&self, parameters: &[u8]) -> Result<Box<dyn ContentDecoder>, EncodingError>;

    /// Whether `data`, compressed elsewhere (a cache), can be sent as it is on a stream
    /// of this profile, after [`ContentEncoder::end_unit`]. The default refuses.
    fn check_precompressed(&self, data: &[u8]) -> Result<(), EncodingError> {
        let _ = data;
        Err(EncodingError::Precompressed {
            reason: format!("profile `{}` has no pre-compressed form", self.name()),
        })
    }

    /// Bytes that end every flush of this profile's encoder
    /// ([`ContentEncoder::encode_flush`]) and that the sender leaves out at the end of
    /// each encoded frame; the decoder puts them back before decoding a payload
    /// (`deflate`: `00 00 ff ff`). Empty by default: frames carry the flushes whole.
    fn stripped_tail(&self) -> &'static [u8] {
        &[]
    }

    /// The places in `data` (accepted by [`Profile::check_precompressed`]) where a frame
    /// may end so that everything before it decodes, appended to `boundaries` as for
    /// [`ContentEncoder::encode_one_pass`] (offsets relative to `data`, the last at its
    /// end). `Ok(false)` when the profile does not know them; the data is then cut at
    /// the frame size. The default does that.
    fn precompressed_boundaries(
        &self,
        data: &[u8],
        boundaries: &mut Vec<Boundary>,
    ) -> Result<bool, EncodingError> {
        let _ = (data, boundaries);
        Ok(false)
    }
}

/// How an outgoing stream encodes: the profile's name and its level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodingSettings {
    /// The profile's name (`identity`, `zstd-8mb`, or one registered by the application).
    pub profile: String,
    /// The compression level (zstd: negative levels are faster, 19 and above slower;
    /// default 3). Ignored by `identity`.
    pub level: i32,
}

impl Default for EncodingSettings {
    /// `identity`, level 3.
    fn default() -> Self {
        Self::new(IDENTITY)
    }
}

impl EncodingSettings {
    /// `profile` at the default level (3).
    pub fn new(profile: impl Into<String>) -> Self {
        Self {
            profile: profile.into(),
            level: DEFAULT_LEVEL,
        }
    }

    /// The same settings at another level.
    pub fn with_level(mut self, level: i32) -> Self {
        self.level = level;
        self
    }
}

/// The profiles a side knows, in its order of preference. Cheap to clone (profiles are
/// shared).
///
/// [`Profiles::default`] holds `zstd-8mb` (with the `zstd` feature), `deflate` (with the
/// `deflate` feature), then `identity`; `identity` is always present. Which one a server
/// prefers is its own list, given to [`Profiles::negotiate`].
///
/// ```
/// use hgframe_stream::Profiles;
/// let profiles = Profiles::default();
/// # #[cfg(all(feature = "zstd", feature = "deflate"))]
/// assert_eq!(profiles.accept_list(), "zstd-8mb, deflate, identity");
/// // We prefer zstd but the peer only takes identity.
/// assert_eq!(profiles.negotiate(&["zstd-8mb", "identity"], &["identity"]), "identity");
/// ```
#[derive(Clone)]
pub struct Profiles {
    /// Shared: every exchange's reactor clones the server's profiles, and a clone is
    /// then one reference count (a change copies the list first).
    list: Arc<Vec<Arc<dyn Profile>>>,
}

impl fmt::Debug for Profiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Default for Profiles {
    fn default() -> Self {
        #[allow(unused_mut)]
        let mut profiles = Self::identity_only();
        #[cfg(feature = "deflate")]
        profiles.register_preferred(Arc::new(Deflate));
        #[cfg(feature = "zstd")]
        profiles.register_preferred(Arc::new(Zstd8Mb::default()));
        profiles
    }
}

impl Profiles {
    /// Only `identity`.
    pub fn identity_only() -> Self {
        Self {
            list: Arc::new(vec![Arc::new(Identity)]),
        }
    }

    /// Adds `profile` as the least preferred one (replacing a profile of the same name,
    /// which keeps its place). `identity` cannot be replaced.
    pub fn register(&mut self, profile: Arc<dyn Profile>) -> &mut Self {
        self.insert(profile, false)
    }

    /// Adds `profile` as the most preferred one (replacing a profile of the same name).
    /// `identity` cannot be replaced.
    pub fn register_preferred(&mut self, profile: Arc<dyn Profile>) -> &mut Self {
        self.insert(profile, true)
    }

    fn insert(&mut self, profile: Arc<dyn Profile>, first: bool) -> &mut Self {
        if profile.name() == IDENTITY {
            return self;
        }
        let list = Arc::make_mut(&mut self.list);
        if let Some(slot) = list.iter_mut().find(|p| p.name() == profile.name()) {
            *slot = profile;
        } else if first {
            list.insert(0, profile);
        } else {
            list.push(profile);
        }
        self
    }

    /// Removes the profile named `name` (not `identity`).
    pub fn remove(&mut self, name: &str) -> &mut Self {
        if name != IDENTITY {
            Arc::make_mut(&mut self.list).retain(|p| p.name() != name);
        }
        self
    }

    /// The profile named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Profile>> {
        self.list.iter().find(|p| p.name() == name)
    }

    /// Whether a profile named `name` is known.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The names, most preferred first.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.list.iter().map(|p| p.name())
    }

    /// The names as an accept list, most preferred first (the value of the HTTP header
    /// `HgFrame-Encodings`): `"zstd-8mb, deflate, identity"`.
    pub fn accept_list(&self) -> String {
        self.names().collect::<Vec<_>>().join(", ")
    }

    /// The profile a sender should use: the first of `ours_in_preference` that this
    /// registry knows and the peer accepts, else `identity` (which needs no agreement).
    pub fn negotiate(&self, ours_in_preference: &[&str], peer_accepts: &[&str]) -> &str {
        ours_in_preference
            .iter()
            .filter(|name| peer_accepts.contains(name))
            .find_map(|name| self.get(name))
            .map_or(IDENTITY, |p| p.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Named(&'static str);

    impl Profile for Named {
        fn name(&self) -> &str {
            self.0
        }
        fn encoder(&self, _: &EncodingSettings) -> Result<Box<dyn ContentEncoder>, EncodingError> {
            Identity.encoder(&EncodingSettings::default())
        }
        fn decoder(&self, p: &[u8]) -> Result<Box<dyn ContentDecoder>, EncodingError> {
            Identity.decoder(p)
        }
    }

    #[test]
    fn registry_order_replacement_and_identity() {
        let mut p = Profiles::identity_only();
        p.register(Arc::new(Named("b")))
            .register_preferred(Arc::new(Named("a")))
            .register(Arc::new(Named("b")));
        assert_eq!(p.accept_list(), "a, identity, b");
        p.remove("identity").remove("a");
        assert_eq!(p.accept_list(), "identity, b");
        // identity cannot be replaced by an impostor
        p.register(Arc::new(Named("identity")));
        assert!(p.get("identity").is_some_and(|p| p.is_identity()));
        assert!(p.contains("b"));
        assert!(!p.contains("a"));
    }

    #[test]
    fn negotiation_uses_only_what_the_peer_accepts() {
        let mut p = Profiles::identity_only();
        p.register(Arc::new(Named("x")))
            .register(Arc::new(Named("y")));
        assert_eq!(p.negotiate(&["x", "y"], &["y", "x"]), "x");
        assert_eq!(p.negotiate(&["y", "x"], &["x", "y"]), "y");
        assert_eq!(p.negotiate(&["x"], &["y"]), "identity");
        assert_eq!(p.negotiate(&["z", "y"], &["z", "y"]), "y"); // z unknown here
        assert_eq!(p.negotiate(&[], &["x"]), "identity");
    }

    #[cfg(all(feature = "zstd", feature = "deflate"))]
    #[test]
    fn default_prefers_zstd() {
        let p = Profiles::default();
        assert_eq!(p.accept_list(), "zstd-8mb, deflate, identity");
        assert_eq!(
            p.negotiate(&["zstd-8mb", "identity"], &["identity", "zstd-8mb"]),
            "zstd-8mb"
        );
    }
}
