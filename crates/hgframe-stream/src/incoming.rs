//! The receiving side: every stream the peer opens towards us, checked against the
//! stream rules and decoded.
//!
//! ```text
//!   (absent) --stream-begin--> Open --stream-end--> (absent: the context is dropped)
//!      |                        |
//!      | any frame without      | stream-begin again, or a decoding error:
//!      | stream-begin: error    | error (a failed stream is forgotten)
//! ```

use std::collections::HashMap;

use bytes::Bytes;
use hgframe_wire::payload::stream_settings::StreamSettings;
use hgframe_wire::{Frame, FrameType, StreamFlags, StreamId, MAX_PAYLOAD_LEN};

use crate::encoding::{ContentDecoder, EncodingError, Profiles};
use crate::error::StreamError;
use crate::id::Side;

/// Bounds on what decoding the peer's streams may cost.
///
/// Check limits set by hand with [`DecodeLimits::validate`].
///
/// ```
/// use hgframe_stream::DecodeLimits;
/// let mut limits = DecodeLimits::default();
/// limits.max_expansion_ratio(100).expansion_allowance(64 << 10);
/// assert!(limits.validate().is_ok());
/// limits.max_expansion_ratio(0);
/// assert_eq!(limits.validate().unwrap_err().setting(), "max_expansion_ratio");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// The most bytes one frame's payload may decode to (default 1 MiB, at most
    /// 16777215, the largest payload). With zstd-8mb, memory per decoding stream is at
    /// most the 8 MiB window plus this.
    pub max_decoded_frame_len: usize,
    /// The most streams with a live decoding context at once (default 16): each may
    /// hold a window of up to 8 MiB.
    pub max_decoding_streams: usize,
    /// The most bytes a stream may decode to per byte of encoded payload it sent,
    /// counted over the stream's life beyond [`Self::expansion_allowance`] (default
    /// 1000, at least 1). So a compression bomb costs its sender: 43 KB of zstd decode
    /// to at most 64 MiB + 43 MB, not 1 GB. A stream more compressible than this past
    /// its allowance (long runs of one byte) must be sent with a lighter encoding, or
    /// the receiver must raise the limit.
    pub max_expansion_ratio: u32,
    /// Bytes a stream may decode to before [`Self::max_expansion_ratio`] applies
    /// (default 64 MiB), so small and medium, very compressible messages always pass
    /// (a 4 MiB run of one byte compresses about 2000 times).
    pub expansion_allowance: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_decoded_frame_len: 1 << 20,
            max_decoding_streams: 16,
            max_expansion_ratio: 1000,
            expansion_allowance: 64 << 20,
        }
    }
}

/// A [`DecodeLimits`] setting out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("decode limit {setting}: {reason}")]
pub struct DecodeLimitsError {
    setting: &'static str,
    reason: &'static str,
}

impl DecodeLimitsError {
    /// The setting's name (the field of [`DecodeLimits`]).
    pub fn setting(&self) -> &'static str {
        self.setting
    }
}

impl DecodeLimits {
    /// Sets [`DecodeLimits::max_decoded_frame_len`].
    pub fn max_decoded_frame_len(&mut self, n: usize) -> &mut Self {
        self.max_decoded_frame_len = n;
        self
    }

    /// Sets [`DecodeLimits::max_decoding_streams`].
    pub fn max_decoding_streams(&mut self, n: usize) -> &mut Self {
        self.max_decoding_streams = n;
        self
    }

    /// Sets [`DecodeLimits::max_expansion_ratio`].
    pub fn max_expansion_ratio(&mut self, ratio: u32) -> &mut Self {
        self.max_expansion_ratio = ratio;
        self
    }

    /// Sets [`DecodeLimits::expansion_allowance`].
    pub fn expansion_allowance(&mut self, bytes: usize) -> &mut Self {
        self.expansion_allowance = bytes;
        self
    }

    /// Checks every limit is in its range: a decoded frame of at least one byte, at
    /// least one decoding stream, a ratio of at least 1 (identity's).
    pub fn validate(&self) -> Result<(), DecodeLimitsError> {
        let err = |setting, reason| Err(DecodeLimitsError { setting, reason });
        if self.max_decoded_frame_len == 0 {
            return err("max_decoded_frame_len", "must be at least 1 byte");
        }
        if self.max_decoding_streams == 0 {
            return err("max_decoding_streams", "must be at least 1");
        }
        if self.max_expansion_ratio == 0 {
            return err(
                "max_expansion_ratio",
                "must be at least 1 (identity decodes to as many bytes as it sends)",
            );
        }
        Ok(())
    }

    /// What a stream that sent `wire` encoded bytes and decoded `decoded` may still
    /// decode to.
    fn expansion_left(&self, wire: u64, decoded: u64) -> u64 {
        let allowed = u64::from(self.max_expansion_ratio)
            .saturating_mul(wire)
            .saturating_add(self.expansion_allowance as u64);
        allowed.saturating_sub(decoded)
    }
}

/// One open incoming stream.
struct IncomingStream {
    /// Whether `stream-settings` came (a stream without is identity).
    has_settings: bool,
    /// The decoding context, once `stream-settings` named a profile.
    decoder: Option<Box<dyn ContentDecoder>>,
    /// Whether the context counts against [`DecodeLimits::max_decoding_streams`]
    /// (every profile but identity).
    counted: bool,
    /// Encoded payload bytes received, and what they decoded to, for
    /// [`DecodeLimits::max_expansion_ratio`].
    wire: u64,
    decoded: u64,
}

/// All streams the peer opens towards us.
///
/// ```
/// use hgframe_stream::{DecodeLimits, IncomingStreams, Profiles, Side, StreamError};
/// use hgframe_wire::{Frame, FrameType, RequestId, StreamFlags, StreamId};
/// let mut streams = IncomingStreams::new(Side::Server, Profiles::default(), DecodeLimits::default());
/// let frame = Frame::new(RequestId(1), StreamId(1), StreamFlags::empty(), FrameType::CommandName, 1, "x")?;
/// // No stream-begin on a stream that is not open:
/// assert!(matches!(streams.on_frame(frame), Err(StreamError::ClosedStream { .. })));
/// # Ok::<(), hgframe_wire::FrameError>(())
/// ```
pub struct IncomingStreams {
    local: Side,
    profiles: Profiles,
    limits: DecodeLimits,
    streams: HashMap<StreamId, IncomingStream>,
    decoding: usize,
}

impl std::fmt::Debug for IncomingStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut open: Vec<_> = self.streams.keys().map(|id| id.0).collect();
        open.sort_unstable();
        f.debug_struct("IncomingStreams")
            .field("local", &self.local)
            .field("profiles", &self.profiles)
            .field("limits", &self.limits)
            .field("open", &open)
            .finish()
    }
}

impl IncomingStreams {
    /// The streams that `local`'s peer opens, decoded with `profiles` (the profiles we
    /// accept) within `limits`.
    pub fn new(local: Side, profiles: Profiles, limits: DecodeLimits) -> Self {
        Self {
            local,
            profiles,
            limits,
            streams: HashMap::new(),
            decoding: 0,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &DecodeLimits {
        &self.limits
    }

    /// Whether stream `id` is open.
    pub fn is_open(&self, id: StreamId) -> bool {
        self.streams.contains_key(&id)
    }

    /// Number of open streams.
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// Checks `frame` against the stream rules and returns what the layer above should
    /// see: `None` for a `stream-settings` frame (consumed here), otherwise the frame
    /// with its payload decoded and the `encoded` flag cleared (`stream-begin` and
    /// `stream-end` are left for information).
    ///
    /// Errors (all [`StreamError::is_protocol_violation`]): a frame on a stream id of
    /// our parity, without `stream-begin` on a stream that is not open, `stream-begin`
    /// on an open stream, `stream-settings` without `stream-begin` or with `encoded`, a
    /// malformed or unknown profile, `encoded` before any `stream-settings`, a payload
    /// that does not decode or decodes to more than the cap, too many decoding streams.
    /// A stream whose payload failed to decode is forgotten: its later frames are
    /// [`StreamError::ClosedStream`].
    pub fn on_frame(&mut self, frame: Frame) -> Result<Option<Frame>, StreamError> {
        self.receive(frame, None)
    }

    /// [`IncomingStreams::on_frame`], decoding into a buffer the caller keeps from
    /// frame to frame instead of a new allocation per frame, for a receiver that copies
    /// the data on (to a file, a socket) and can reuse one buffer.
    ///
    /// `decoded` is cleared first. For a frame with `encoded`, its decoded payload is
    /// put in `decoded` and the frame comes back with the `encoded` flag cleared and an
    /// empty payload; any other frame comes back as from `on_frame` and `decoded` stays
    /// empty. So the frame's data is `decoded` when it is not empty, else the returned
    /// frame's payload.
    pub fn on_frame_into(
        &mut self,
        frame: Frame,
        decoded: &mut Vec<u8>,
    ) -> Result<Option<Frame>, StreamError> {
        decoded.clear();
        self.receive(frame, Some(decoded))
    }

    fn receive(
        &mut self,
        frame: Frame,
        into: Option<&mut Vec<u8>>,
    ) -> Result<Option<Frame>, StreamError> {
        let id = frame.stream_id();
        if self.local.owns(id) {
            return Err(StreamError::WrongParity {
                id,
                side: self.local.peer(),
            });
        }
        let flags = frame.stream_flags();
        let begin = flags.contains(StreamFlags::STREAM_BEGIN);
        let end = flags.contains(StreamFlags::STREAM_END);
        let is_settings = frame.known_type() == Some(FrameType::StreamSettings);
        match (begin, self.streams.contains_key(&id)) {
            (true, true) => return Err(StreamError::AlreadyOpen { id }),
            (false, false) => return Err(StreamError::ClosedStream { id }),
            _ => {}
        }
        if is_settings {
            if !begin {
                return Err(StreamError::SettingsWithoutBegin { id });
            }
            if flags.contains(StreamFlags::ENCODED) {
                return Err(StreamError::SettingsEncoded { id });
            }
            let stream = self.open_with_settings(id, frame.payload())?;
            if !end {
                self.insert(id, stream);
            }
            return Ok(None);
        }
        if begin {
            self.insert(
                id,
                IncomingStream {
                    has_settings: false,
                    decoder: None,
                    counted: false,
                    wire: 0,
                    decoded: 0,
                },
            );
        }
        let frame = if flags.contains(StreamFlags::ENCODED) {
            let payload = match into {
                Some(buf) => self.decode(id, &frame, buf).map(|()| Bytes::new()),
                None => {
                    let mut buf = Vec::new();
                    self.decode(id, &frame, &mut buf).map(|()| Bytes::from(buf))
                }
            };
            match payload {
                Ok(payload) => frame
                    .with_stream_flags(flags - StreamFlags::ENCODED)
                    .with_payload(payload)?,
                Err(e) => {
                    self.remove(id);
                    return Err(e);
                }
            }
        } else {
            frame
        };
        if end {
            self.remove(id);
        }
        Ok(Some(frame))
    }

    /// The state of a stream opened by `stream-settings` with this payload.
    fn open_with_settings(
        &self,
        id: StreamId,
        payload: &Bytes,
    ) -> Result<IncomingStream, StreamError> {
        let settings = StreamSettings::parse(payload)
            .map_err(|source| StreamError::BadSettings { id, source })?;
        let profile =
            self.profiles
                .get(&settings.profile)
                .ok_or_else(|| StreamError::UnknownProfile {
                    name: settings.profile.clone(),
                })?;
        let bad_parameters = |source| StreamError::BadProfileParameters {
            id,
            profile: settings.profile.clone(),
            source,
        };
        if profile.is_identity() {
            // Identity has a decoder (a copy) only for peers that mark frames encoded
            // anyway; it holds no memory worth counting.
            let decoder = profile
                .decoder(&settings.parameters)
                .map_err(bad_parameters)?;
            return Ok(IncomingStream {
                has_settings: true,
                decoder: Some(decoder),
                counted: false,
                wire: 0,
                decoded: 0,
            });
        }
        if self.decoding >= self.limits.max_decoding_streams {
            return Err(StreamError::TooManyDecodingStreams {
                limit: self.limits.max_decoding_streams,
            });
        }
        let decoder = profile
            .decoder(&settings.parameters)
            .map_err(bad_parameters)?;
        Ok(IncomingStream {
            has_settings: true,
            decoder: Some(decoder),
            counted: true,
            wire: 0,
            decoded: 0,
        })
    }

    fn decode(
        &mut self,
        id: StreamId,
        frame: &Frame,
        out: &mut Vec<u8>,
    ) -> Result<(), StreamError> {
        let limit = self.limits.max_decoded_frame_len.min(MAX_PAYLOAD_LEN);
        let limits = self.limits;
        let stream = self
            .streams
            .get_mut(&id)
            .ok_or(StreamError::ClosedStream { id })?;
        let Some(decoder) = stream.decoder.as_mut().filter(|_| stream.has_settings) else {
            return Err(StreamError::EncodedBeforeSettings { id });
        };
        stream.wire = stream.wire.saturating_add(frame.payload().len() as u64);
        // The decoder stops at whichever comes first, the frame's cap or the stream's
        // expansion budget, so a bomb is never decoded past the budget.
        let left = usize::try_from(limits.expansion_left(stream.wire, stream.decoded))
            .unwrap_or(usize::MAX);
        let by_ratio = left < limit;
        let start = out.len();
        match decoder.decode(frame.payload(), out, limit.min(left)) {
            Ok(()) => {
                stream.decoded = stream
                    .decoded
                    .saturating_add(out.len().saturating_sub(start) as u64);
                Ok(())
            }
            Err(EncodingError::TooLarge { .. }) if by_ratio => {
                Err(StreamError::ExpansionTooLarge {
                    id,
                    ratio: limits.max_expansion_ratio,
                    allowance: limits.expansion_allowance,
                    wire: stream.wire,
                    decoded: stream.decoded,
                })
            }
            Err(EncodingError::TooLarge { .. }) => Err(StreamError::DecodedTooLarge { id, limit }),
            Err(source) => Err(StreamError::Corrupt { id, source }),
        }
    }

    fn insert(&mut self, id: StreamId, stream: IncomingStream) {
        if stream.counted {
            self.decoding += 1;
        }
        self.streams.insert(id, stream);
    }

    fn remove(&mut self, id: StreamId) {
        if let Some(stream) = self.streams.remove(&id) {
            if stream.counted {
                self.decoding = self.decoding.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_send_and_starts_empty() {
        fn send<T: Send>() {}
        send::<IncomingStreams>();
        let s = IncomingStreams::new(Side::Server, Profiles::default(), DecodeLimits::default());
        assert_eq!(s.open_streams(), 0);
        assert_eq!(s.limits().max_decoded_frame_len, 1 << 20);
        assert_eq!(s.limits().max_decoding_streams, 16);
    }

    #[test]
    fn the_cap_never_exceeds_the_largest_payload() {
        // A cap above 16777215 is clamped: a decoded payload must still fit a frame.
        let mut limits = DecodeLimits::default();
        limits.max_decoded_frame_len(usize::MAX);
        let mut s = IncomingStreams::new(Side::Client, Profiles::default(), limits);
        let settings = Frame::new(
            hgframe_wire::RequestId(1),
            StreamId(2),
            StreamFlags::STREAM_BEGIN,
            FrameType::StreamSettings,
            0,
            "\x08identity",
        )
        .unwrap();
        assert!(s.on_frame(settings).unwrap().is_none());
        let data = Frame::new(
            hgframe_wire::RequestId(1),
            StreamId(2),
            StreamFlags::ENCODED,
            FrameType::BytesResponse,
            0,
            "abc",
        )
        .unwrap();
        assert_eq!(&s.on_frame(data).unwrap().unwrap().payload()[..], b"abc");
    }
}
