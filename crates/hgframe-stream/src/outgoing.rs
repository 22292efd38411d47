//! The sending half of a stream: stamps the stream flags, emits `stream-settings`, cuts
//! data at the frame size and runs it through the stream's encoder.
//!
//! Every encoded frame ends where everything before it decodes (for zstd, on a block
//! boundary), on every path: the streaming path flushes at most
//! [`OutgoingStream::max_flush_raw_len`] raw bytes at a time, so that one flush always
//! fits one frame even for incompressible data, and cuts frames only between flushes;
//! the one-pass path is taken only when its largest block fits a frame, and cuts between
//! blocks; pre-compressed data is cut between its blocks. The one exception: a piece
//! that cannot fit a frame (a frame size under 28 bytes for zstd, or a pre-compressed
//! block larger than a frame) spans `continuation` frames, and only the last of them
//! ends where it does.
//!
//! ```text
//!            first push: stream-begin            end(): stream-end on the last frame,
//!   Idle ------------------------------> Open -----------------------------------> Closed
//!                                         ^    (the encoding context is dropped)     |
//!                                         +------------------------------------------+
//!                                          next push: stream-begin again, new context
//! ```

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use hgframe_wire::payload::stream_settings::StreamSettings;
use hgframe_wire::{
    Frame, FrameType, RequestId, StreamFlags, StreamId, DEFAULT_MAX_FRAME_SIZE, HEADER_LEN,
    MAX_PAYLOAD_LEN,
};

use crate::encoding::{Boundary, ContentEncoder, EncodingSettings, Profile, Profiles};
use crate::error::StreamError;
use crate::id::Side;

/// The most raw bytes one encoded frame carries by default (128 KiB, zstd's largest
/// block), whatever the compression ratio: a receiver must accept frames that decode to
/// this much ([`crate::DecodeLimits::max_decoded_frame_len`], 1 MiB by default).
pub const DEFAULT_MAX_FRAME_RAW_LEN: usize = 128 * 1024;

/// Data pushed in one piece from this size on is encoded in one pass by default (see
/// [`OutgoingStream::set_one_pass_min_len`]).
pub const DEFAULT_ONE_PASS_MIN_LEN: usize = 1 << 20;

/// One pass encodes at most this much at once, so that the encoded output held before
/// the first frame goes out stays bounded.
const ONE_PASS_SEGMENT_MAX: usize = 16 << 20;

/// The streaming path hands its encoded output over to frames in segments of about this
/// size (or two frames, if larger), so what one push holds before its frames are cut
/// stays bounded.
const SEGMENT_ENCODED_LEN: usize = 256 * 1024;

/// `continuation` and `eos` have the same bits for `bytes-response` and `command-data`.
const CONTINUATION: u8 = 0x01;
const EOS: u8 = 0x02;

/// Counters of one outgoing stream, over its whole life (all openings).
///
/// The stream reads no clock: the time spent encoding is for the caller to measure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Data bytes given to `push_data` / `push_raw_data`, before encoding.
    pub raw_bytes: u64,
    /// Pre-compressed bytes given to `push_precompressed`.
    pub precompressed_bytes: u64,
    /// Bytes of the frames emitted, headers included.
    pub wire_bytes: u64,
    /// Frames emitted (`stream-settings` included).
    pub frames: u64,
    /// Frames emitted with the `encoded` flag.
    pub encoded_frames: u64,
    /// Times the encoder was flushed (one per encoded piece of data).
    pub flushes: u64,
    /// Times the stream was opened (`stream-begin`).
    pub openings: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Open,
    Closed,
}

/// The sending half of one stream: owns its encoding context, and is `Send` so it can be
/// encoded on a worker thread ([`crate::parallel`]).
///
/// Frames come out in `out` vectors, in the order to send them; frames of different
/// streams may be interleaved freely, frames of one stream may not be reordered.
pub struct OutgoingStream {
    id: StreamId,
    side: Side,
    profile: Arc<dyn Profile>,
    settings: EncodingSettings,
    state: State,
    /// The next frame emitted carries `stream-begin`.
    begin_pending: bool,
    /// The live context (`None` for identity, and after `end`).
    encoder: Option<Box<dyn ContentEncoder>>,
    max_frame_size: usize,
    max_frame_raw_len: usize,
    one_pass_min_len: usize,
    /// See [`OutgoingStream::max_flush_raw_len`], kept up to date while an encoder is
    /// live.
    flush_raw_len: usize,
    stats: StreamStats,
}

impl std::fmt::Debug for OutgoingStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingStream")
            .field("id", &self.id)
            .field("side", &self.side)
            .field("profile", &self.profile.name())
            .field("level", &self.settings.level)
            .field("state", &self.state)
            .field("max_frame_size", &self.max_frame_size)
            .field("stats", &self.stats)
            .finish()
    }
}

impl OutgoingStream {
    /// A stream `id` of `side` (which must own the id's parity) encoding with
    /// `settings.profile`, looked up in `profiles`. Nothing is sent until the first push.
    ///
    /// Fails with [`StreamError::NotOwnStream`], [`StreamError::UnknownProfile`], or
    /// [`StreamError::Encoding`] (a level the profile does not have).
    pub fn new(
        id: StreamId,
        side: Side,
        profiles: &Profiles,
        settings: &EncodingSettings,
    ) -> Result<Self, StreamError> {
        if !side.owns(id) {
            return Err(StreamError::NotOwnStream { id, side });
        }
        let profile = profiles
            .get(&settings.profile)
            .ok_or_else(|| StreamError::UnknownProfile {
                name: settings.profile.clone(),
            })?
            .clone();
        let mut stream = Self {
            id,
            side,
            profile,
            settings: settings.clone(),
            state: State::Idle,
            begin_pending: false,
            encoder: None,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_frame_raw_len: DEFAULT_MAX_FRAME_RAW_LEN,
            one_pass_min_len: DEFAULT_ONE_PASS_MIN_LEN,
            flush_raw_len: 1,
            stats: StreamStats::default(),
        };
        // Made now so a bad level fails here rather than at the first push.
        stream.encoder = stream.new_encoder()?;
        stream.update_flush_raw_len();
        Ok(stream)
    }

    /// The stream's id.
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// The side sending on this stream.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The name of the stream's content-encoding profile.
    pub fn profile(&self) -> &str {
        self.profile.name()
    }

    /// The compression level (from the next encoded frame on).
    pub fn level(&self) -> i32 {
        self.settings.level
    }

    /// Whether the stream is open: it sent `stream-begin` and not yet `stream-end`.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Largest payload of a frame on the wire (default 32768).
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Sets the largest payload of a frame on the wire, 1..=16777215 (clamped). Encoded
    /// data that does not fit one frame goes on in `continuation` frames.
    pub fn set_max_frame_size(&mut self, n: usize) {
        self.max_frame_size = n.clamp(1, MAX_PAYLOAD_LEN);
        self.update_flush_raw_len();
    }

    /// Largest number of raw bytes one encoded frame carries (default
    /// [`DEFAULT_MAX_FRAME_RAW_LEN`]).
    pub fn max_frame_raw_len(&self) -> usize {
        self.max_frame_raw_len
    }

    /// Sets the largest number of raw bytes one encoded frame carries (at least 1). It
    /// bounds what one frame decodes to, so keep it at or below the receiver's
    /// [`crate::DecodeLimits::max_decoded_frame_len`]; smaller values flush more often
    /// (lower latency, lower ratio).
    pub fn set_max_frame_raw_len(&mut self, n: usize) {
        self.max_frame_raw_len = n.max(1);
        self.update_flush_raw_len();
    }

    /// Data pushed in one piece of at least this many bytes (default 1 MiB) is encoded
    /// in one pass when the encoder can ([`ContentEncoder::encode_one_pass`]): for zstd
    /// about 10% faster, as zstd reads the data in place instead of copying it through
    /// its ring buffer. The price: the piece is a zstd frame of its own, compressed
    /// without the history of what the stream sent before (and data after it starts
    /// without its history), and its frames go out only once the whole piece (at most
    /// 16 MiB at a time) is encoded. It is taken only when a whole block (at most
    /// [`OutgoingStream::max_frame_raw_len`] raw bytes) is sure to fit one frame, for
    /// zstd with the default 128 KiB from a frame size of 132,635 bytes on; frames then
    /// end between blocks, so each decodes on arrival. With smaller frames the data goes
    /// through the streaming path. `usize::MAX` turns this off.
    pub fn set_one_pass_min_len(&mut self, n: usize) {
        self.one_pass_min_len = n;
    }

    /// See [`OutgoingStream::set_one_pass_min_len`].
    pub fn one_pass_min_len(&self) -> usize {
        self.one_pass_min_len
    }

    /// Changes the compression level between frames (for instance lower when the peer
    /// reads slowly, as `zstd --adapt` does). The receiver needs no notice. For zstd the
    /// new level starts a new zstd frame, which costs the history accumulated so far.
    pub fn set_level(&mut self, level: i32) -> Result<(), StreamError> {
        if let Some(encoder) = self.encoder.as_mut() {
            encoder
                .set_level(level)
                .map_err(|source| StreamError::Encoding {
                    id: self.id,
                    source,
                })?;
        }
        self.settings.level = level;
        // The worst case may depend on the level (deflate's level 1).
        self.update_flush_raw_len();
        Ok(())
    }

    /// The stream's counters.
    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Raw data (`bytes-response` or `command-data` payload bytes) for one request.
    ///
    /// The data is cut into frames within the frame size, content-encoded when the
    /// stream has an encoding (flag `encoded`); every frame has `continuation` except
    /// the last, which has `eos` when `eos` is true. Empty data with `eos` is one empty
    /// `eos` frame. The stream's first frame carries `stream-begin`, and is a
    /// `stream-settings` frame if the profile is not identity.
    pub fn push_data(
        &mut self,
        request: RequestId,
        frame_type: FrameType,
        data: Bytes,
        eos: bool,
        out: &mut Vec<Frame>,
    ) -> Result<(), StreamError> {
        self.check_data_type(frame_type)?;
        self.open(request, out)?;
        self.stats.raw_bytes += data.len() as u64;
        if self.encoder.is_none() || data.is_empty() {
            return self.cut(request, frame_type, data, eos, false, out);
        }
        if data.len() >= self.one_pass_min_len
            && self.one_pass_fits()
            && self.push_one_pass(request, frame_type, &data, eos, out)?
        {
            return Ok(());
        }
        self.push_flushed(request, frame_type, data, eos, out)
    }

    /// The most raw bytes one flush of the encoder takes: the most whose encoded form
    /// fits one frame whatever the data, incompressible included (from
    /// [`ContentEncoder::max_encoded_len`]), and at most
    /// [`OutgoingStream::max_frame_raw_len`]. Frames end only between flushes, so every
    /// encoded frame decodes on arrival. A stream with no encoding returns the frame
    /// size.
    ///
    /// With zstd-8mb and the default 32768-byte frames this is 32,363 bytes; a frame
    /// size too small to hold even one byte's worst case (under 28 bytes for zstd) gives
    /// 1, and then a flush may span `continuation` frames.
    pub fn max_flush_raw_len(&self) -> usize {
        if self.profile.is_identity() {
            return self.max_frame_size;
        }
        self.flush_raw_len
    }

    /// Computes [`OutgoingStream::max_flush_raw_len`] from the live encoder, if any
    /// (again when the stream reopens).
    fn update_flush_raw_len(&mut self) {
        let Some(encoder) = self.encoder.as_ref() else {
            return;
        };
        // A flush that ends a frame loses the profile's tail on the wire.
        let max_frame_size = self
            .max_frame_size
            .saturating_add(self.profile.stripped_tail().len());
        let fits = |n: usize| encoder.max_encoded_len(n) <= max_frame_size;
        let (mut lo, mut hi) = (0usize, self.max_frame_raw_len);
        let len = if fits(hi) {
            hi
        } else {
            // !fits(hi), and fits(lo) unless lo == 0.
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if fits(mid) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            lo.max(1)
        };
        self.flush_raw_len = len;
    }

    /// Whether one-pass output can be cut at block boundaries only: its largest piece
    /// between two boundaries (a block decoding to at most `max_frame_raw_len` bytes)
    /// always fits one frame.
    fn one_pass_fits(&self) -> bool {
        self.encoder
            .as_ref()
            .is_some_and(|e| e.max_encoded_len(self.max_frame_raw_len) <= self.max_frame_size)
    }

    /// The streaming path: flushes of at most [`OutgoingStream::max_flush_raw_len`] raw
    /// bytes, as many per frame as fit, frames ending only between flushes.
    fn push_flushed(
        &mut self,
        request: RequestId,
        frame_type: FrameType,
        data: Bytes,
        eos: bool,
        out: &mut Vec<Frame>,
    ) -> Result<(), StreamError> {
        let id = self.id;
        let flush_len = self.max_flush_raw_len();
        let segment_len = SEGMENT_ENCODED_LEN.max(self.max_frame_size.saturating_mul(2));
        if self.encoder.is_none() {
            return self.cut(request, frame_type, data, eos, false, out);
        }
        let mut rest = data;
        // Encoded bytes not yet in frames, and where each flush in them ends.
        let mut buf: Vec<u8> = Vec::new();
        let mut boundaries: Vec<Boundary> = Vec::new();
        let mut decoded = 0usize;
        while !rest.is_empty() {
            let Some(encoder) = self.encoder.as_mut() else {
                // Checked above; a stream's encoder goes only in `end`.
                return Err(StreamError::Encoding {
                    id,
                    source: crate::EncodingError::Compressor {
                        message: "the stream lost its encoder".into(),
                    },
                });
            };
            if buf.capacity() == buf.len() {
                // Room for a segment, or for all that is left if less (a small message
                // must not reserve a segment sized for 16 MiB frames).
                let want = encoder
                    .max_encoded_len(rest.len())
                    .min(segment_len.saturating_add(encoder.max_encoded_len(flush_len)));
                buf.reserve(want);
            }
            let chunk = rest.split_to(flush_len.min(rest.len()));
            encoder
                .encode_flush(&chunk, &mut buf)
                .map_err(|source| StreamError::Encoding { id, source })?;
            self.stats.flushes += 1;
            decoded += chunk.len();
            boundaries.push(Boundary {
                encoded_end: buf.len(),
                decoded_max: decoded,
            });
            let last = rest.is_empty();
            if !last && buf.len() < segment_len {
                continue;
            }
            let encoded = Bytes::from(std::mem::take(&mut buf));
            let (done, done_decoded) = self.cut_at_boundaries(
                request,
                frame_type,
                &encoded,
                &boundaries,
                last && eos,
                !last,
                out,
            )?;
            if !last {
                // The last frame's worth may take more flushes: carried to the next
                // segment (a copy of less than a frame).
                let tail = encoded.get(done..).unwrap_or_default();
                buf.reserve(tail.len());
                buf.extend_from_slice(tail);
                boundaries.retain(|b| b.encoded_end > done);
                for b in &mut boundaries {
                    b.encoded_end -= done;
                    b.decoded_max -= done_decoded;
                }
                decoded -= done_decoded;
            }
        }
        Ok(())
    }

    /// Like [`OutgoingStream::push_data`], but the frames are sent raw (no `encoded`
    /// flag) even on an encoded stream, for data known not to compress. The encoding
    /// context is not touched.
    pub fn push_raw_data(
        &mut self,
        request: RequestId,
        frame_type: FrameType,
        data: Bytes,
        eos: bool,
        out: &mut Vec<Frame>,
    ) -> Result<(), StreamError> {
        self.check_data_type(frame_type)?;
        self.open(request, out)?;
        self.stats.raw_bytes += data.len() as u64;
        self.cut(request, frame_type, data, eos, false, out)
    }

    /// Any frame built elsewhere (`command-name`, `text-output`, `error-response`, ...):
    /// sent raw on this stream (the encoding context is not touched), with its stream id
    /// and stream flags replaced by this stream's. Its payload must fit the frame size;
    /// `stream-settings` frames are the stream's own business and are refused.
    pub fn push_frame(&mut self, frame: Frame, out: &mut Vec<Frame>) -> Result<(), StreamError> {
        if frame.payload().len() > self.max_frame_size {
            return Err(StreamError::FrameTooLarge {
                id: self.id,
                len: frame.payload().len(),
                max: self.max_frame_size,
            });
        }
        if frame.known_type() == Some(FrameType::StreamSettings) {
            return Err(StreamError::NotDataFrameType {
                id: self.id,
                frame_type: frame.frame_type(),
            });
        }
        self.open(frame.request_id(), out)?;
        let flags = self.take_begin();
        out.push(frame.with_stream_id(self.id).with_stream_flags(flags));
        self.count_frame(out.last().map_or(0, Frame::encoded_len), false);
        Ok(())
    }

    /// Data that is already compressed in the stream's profile format (for zstd-8mb:
    /// whole zstd frames, for instance from a cache), sent as `encoded` frames without
    /// compressing it again; the receiver gets the original bytes.
    ///
    /// How: the encoder ends its current unit (for zstd, the open zstd frame is ended,
    /// a few bytes), then the compressed bytes follow as they are, cut between their
    /// blocks ([`Profile::precompressed_boundaries`]): each frame holds as many whole
    /// blocks as fit, so it decodes on arrival. A block larger than a frame (data
    /// compressed with 128 KiB blocks, sent in 32 KiB frames) spans `continuation`
    /// frames, which decode only when its last piece arrives; data made by flushing
    /// every [`OutgoingStream::max_flush_raw_len`] bytes never has such blocks.
    /// A zstd decoder reads concatenated frames as one stream, so the receiver needs no
    /// notice. The cost: data pushed after this starts a new zstd frame without the
    /// history of what came before. When that matters (many small messages), send the
    /// cached data on a short-lived stream of its own instead, which leaves this
    /// stream's history intact at the price of a stream id and a `stream-settings`
    /// frame.
    ///
    /// The data is checked first ([`Profile::check_precompressed`]: whole frames, a
    /// window within the profile's, no dictionary); identity streams refuse it.
    pub fn push_precompressed(
        &mut self,
        request: RequestId,
        frame_type: FrameType,
        compressed: Bytes,
        eos: bool,
        out: &mut Vec<Frame>,
    ) -> Result<(), StreamError> {
        self.check_data_type(frame_type)?;
        let id = self.id;
        let encoding = |source| StreamError::Encoding { id, source };
        if self.profile.is_identity() {
            return Err(encoding(crate::EncodingError::Precompressed {
                reason: "an identity stream has no compressed form".into(),
            }));
        }
        self.profile
            .check_precompressed(&compressed)
            .map_err(encoding)?;
        self.open(request, out)?;
        let mut epilogue = Vec::new();
        if let Some(encoder) = self.encoder.as_mut() {
            encoder.end_unit(&mut epilogue).map_err(encoding)?;
        }
        self.stats.precompressed_bytes += compressed.len() as u64;
        let mut boundaries = Vec::new();
        if !self
            .profile
            .precompressed_boundaries(&compressed, &mut boundaries)
            .map_err(encoding)?
        {
            boundaries.clear();
        }
        let mut compressed = compressed;
        if !epilogue.is_empty() {
            // The end of the previous zstd frame rides in the first frame, with the
            // first pieces that fit after it (a copy of less than a frame).
            let e = epilogue.len();
            let first = self
                .furthest_fit(0, 0, e, boundaries.iter().copied())
                .and_then(|k| boundaries.get(k).copied());
            let mut head = BytesMut::from(&epilogue[..]);
            let (taken, taken_decoded) = first.map_or((0, 0), |b| (b.encoded_end, b.decoded_max));
            head.extend_from_slice(compressed.get(..taken).unwrap_or_default());
            compressed = compressed.slice(taken.min(compressed.len())..);
            let last = compressed.is_empty();
            // Nothing that fits after the epilogue: it goes alone (it ends a zstd frame,
            // so the frame still ends where everything before it decodes).
            self.emit(
                request,
                frame_type,
                if last && eos { EOS } else { CONTINUATION },
                true,
                head.freeze(),
                out,
            )?;
            if last {
                return Ok(());
            }
            boundaries.retain(|b| b.encoded_end > taken);
            for b in &mut boundaries {
                b.encoded_end -= taken;
                b.decoded_max -= taken_decoded;
            }
        }
        self.cut_at_boundaries(
            request,
            frame_type,
            &compressed,
            &boundaries,
            eos,
            false,
            out,
        )?;
        Ok(())
    }

    /// Closes the stream: marks this stream's last frame in `out` with `stream-end` and
    /// drops the encoding context. Emits nothing if the stream is not open. A later push
    /// opens the stream again (`stream-begin`, new context).
    ///
    /// The frame to mark must still be in `out`: call `end` before handing the last
    /// frame over for sending. Otherwise [`StreamError::EndWithoutFrame`], and the
    /// stream stays open (push one more frame, then `end`).
    pub fn end(&mut self, out: &mut [Frame]) -> Result<(), StreamError> {
        if self.state != State::Open {
            return Ok(());
        }
        let id = self.id;
        let last = out
            .iter_mut()
            .rev()
            .find(|f| f.stream_id() == id)
            .filter(|f| !f.stream_flags().contains(StreamFlags::STREAM_END))
            .ok_or(StreamError::EndWithoutFrame { id })?;
        let flags = last.stream_flags() | StreamFlags::STREAM_END;
        *last = last.clone().with_stream_flags(flags);
        self.state = State::Closed;
        self.encoder = None;
        Ok(())
    }

    fn new_encoder(&self) -> Result<Option<Box<dyn ContentEncoder>>, StreamError> {
        if self.profile.is_identity() {
            return Ok(None);
        }
        self.profile
            .encoder(&self.settings)
            .map(Some)
            .map_err(|source| StreamError::Encoding {
                id: self.id,
                source,
            })
    }

    /// Opens the stream if it is not: the next frame gets `stream-begin`, and a
    /// non-identity stream first sends its `stream-settings`.
    fn open(&mut self, request: RequestId, out: &mut Vec<Frame>) -> Result<(), StreamError> {
        if self.state == State::Open {
            return Ok(());
        }
        if self.encoder.is_none() {
            self.encoder = self.new_encoder()?;
            self.update_flush_raw_len();
        }
        let settings_frame = if self.profile.is_identity() {
            None
        } else {
            let settings = StreamSettings {
                profile: self.profile.name().to_owned(),
                parameters: self.profile.settings_parameters(&self.settings),
            };
            let payload = settings
                .encode()
                .map_err(|source| StreamError::BadSettings {
                    id: self.id,
                    source,
                })?;
            if payload.len() > self.max_frame_size {
                return Err(StreamError::FrameTooLarge {
                    id: self.id,
                    len: payload.len(),
                    max: self.max_frame_size,
                });
            }
            Some(Frame::new(
                request,
                self.id,
                StreamFlags::STREAM_BEGIN,
                FrameType::StreamSettings,
                0,
                payload,
            )?)
        };
        self.state = State::Open;
        self.stats.openings += 1;
        self.begin_pending = true;
        if let Some(frame) = settings_frame {
            self.begin_pending = false;
            self.count_frame(frame.encoded_len(), false);
            out.push(frame);
        }
        Ok(())
    }

    fn check_data_type(&self, frame_type: FrameType) -> Result<(), StreamError> {
        match frame_type {
            FrameType::BytesResponse | FrameType::CommandData => Ok(()),
            other => Err(StreamError::NotDataFrameType {
                id: self.id,
                frame_type: other as u8,
            }),
        }
    }

    /// Encodes `data` in one pass per segment, if the encoder can; `false` (nothing
    /// emitted) if it cannot.
    fn push_one_pass(
        &mut self,
        request: RequestId,
        frame_type: FrameType,
        data: &Bytes,
        eos: bool,
        out: &mut Vec<Frame>,
    ) -> Result<bool, StreamError> {
        let id = self.id;
        let segments = data.len().div_ceil(ONE_PASS_SEGMENT_MAX);
        let mut boundaries = Vec::new();
        for i in 0..segments {
            let segment = data.slice(data.len() * i / segments..data.len() * (i + 1) / segments);
            let Some(encoder) = self.encoder.as_mut() else {
                return Ok(false);
            };
            let mut buf = Vec::new();
            boundaries.clear();
            let done = encoder
                .encode_one_pass(&segment, self.max_frame_raw_len, &mut buf, &mut boundaries)
                .map_err(|source| StreamError::Encoding { id, source })?;
            if !done {
                // Only the first segment can decline: nothing was sent yet.
                return Ok(false);
            }
            self.stats.flushes += 1;
            buf.shrink_to_fit();
            let last_eos = eos && i + 1 == segments;
            self.cut_at_boundaries(
                request,
                frame_type,
                &Bytes::from(buf),
                &boundaries,
                last_eos,
                false,
                out,
            )?;
        }
        Ok(true)
    }

    /// Emits encoded output as `encoded` frames, each ending at a boundary (a place
    /// where everything before decodes), holding as many boundaries' worth as fit the
    /// frame size and `max_frame_raw_len` decoded bytes (at least one). Only a piece
    /// between two boundaries larger than a frame spans `continuation` frames, the
    /// inner ones ending inside it. `eos` goes on the last frame when `last_eos`.
    ///
    /// With `keep_tail`, the last frame is not emitted (more may join it): returns the
    /// encoded and decoded offsets up to which frames were emitted.
    #[allow(clippy::too_many_arguments)]
    fn cut_at_boundaries(
        &mut self,
        request: RequestId,
        frame_type: FrameType,
        encoded: &Bytes,
        boundaries: &[Boundary],
        last_eos: bool,
        keep_tail: bool,
        out: &mut Vec<Frame>,
    ) -> Result<(usize, usize), StreamError> {
        let (mut start, mut decoded_start) = (0usize, 0usize);
        let mut i = 0usize;
        let max = self.max_frame_size;
        // Data past the last boundary (a profile that knows none) is one more piece.
        let decoded_end = boundaries.last().map_or(0, |b| b.decoded_max);
        let tail = Boundary {
            encoded_end: encoded.len(),
            decoded_max: decoded_end,
        };
        let count = boundaries.len()
            + usize::from(boundaries.last().map_or(0, |b| b.encoded_end) < encoded.len());
        let at = |j: usize| boundaries.get(j).copied().unwrap_or(tail);
        while start < encoded.len() && i < count {
            let Some(j) = self.furthest_fit(start, decoded_start, 0, (i..count).map(at)) else {
                // The next piece is larger than a frame: it spans frames, and only the
                // last of them ends where it does.
                let until = at(i).encoded_end.min(encoded.len());
                while until - start > max {
                    self.emit(
                        request,
                        frame_type,
                        CONTINUATION,
                        true,
                        encoded.slice(start..start + max),
                        out,
                    )?;
                    start += max;
                }
                continue; // the rest of the piece fits a frame now
            };
            let j = i + j + 1; // boundaries i..j go in this frame
            if keep_tail && j == count {
                break;
            }
            let b = at(j - 1);
            let end = b.encoded_end.clamp(start, encoded.len());
            let flags = if end == encoded.len() && last_eos {
                EOS
            } else {
                CONTINUATION
            };
            let payload = self.strip_tail(encoded.slice(start..end))?;
            self.emit(request, frame_type, flags, true, payload, out)?;
            start = end;
            decoded_start = b.decoded_max;
            i = j;
        }
        Ok((start, decoded_start))
    }

    /// Of `candidates` (boundaries in order), the index of the furthest that one frame
    /// starting at `start` (after `decoded_start` decoded bytes) can end at, with
    /// `extra` bytes before it: within the frame size, and within `max_frame_raw_len`
    /// decoded bytes unless it is the first. `None` if not even the first fits.
    fn furthest_fit(
        &self,
        start: usize,
        decoded_start: usize,
        extra: usize,
        candidates: impl Iterator<Item = Boundary>,
    ) -> Option<usize> {
        let mut found = None;
        // A frame ending at a boundary goes without the profile's tail.
        let stripped = self.profile.stripped_tail().len();
        for (k, b) in candidates.enumerate() {
            let wire = b
                .encoded_end
                .saturating_sub(start)
                .saturating_add(extra)
                .saturating_sub(stripped);
            let raw = b.decoded_max.saturating_sub(decoded_start);
            if wire > self.max_frame_size || (raw > self.max_frame_raw_len && found.is_some()) {
                break;
            }
            found = Some(k);
        }
        found
    }

    /// Emits `data` as frames within the frame size, flagged `encoded` when `encoded`.
    /// `eos` goes on the last of them when `eos`; the others get `continuation`. Empty raw
    /// data without `eos` emits nothing; empty encoded bytes still emit one frame.
    fn cut(
        &mut self,
        request: RequestId,
        frame_type: FrameType,
        mut data: Bytes,
        eos: bool,
        encoded: bool,
        out: &mut Vec<Frame>,
    ) -> Result<(), StreamError> {
        if data.is_empty() && !eos && !encoded {
            return Ok(());
        }
        loop {
            let piece = data.split_to(data.len().min(self.max_frame_size));
            let flags = if data.is_empty() && eos {
                EOS
            } else {
                CONTINUATION
            };
            self.emit(request, frame_type, flags, encoded, piece, out)?;
            if data.is_empty() {
                return Ok(());
            }
        }
    }

    fn emit(
        &mut self,
        request: RequestId,
        frame_type: FrameType,
        flags: u8,
        encoded: bool,
        payload: Bytes,
        out: &mut Vec<Frame>,
    ) -> Result<(), StreamError> {
        let mut stream_flags = self.take_begin();
        if encoded {
            stream_flags |= StreamFlags::ENCODED;
        }
        let len = payload.len();
        out.push(Frame::new(
            request,
            self.id,
            stream_flags,
            frame_type,
            flags,
            payload,
        )?);
        self.count_frame(HEADER_LEN + len, encoded);
        Ok(())
    }

    /// A frame's payload, ending at a boundary, without the profile's tail
    /// ([`Profile::stripped_tail`]), which the receiver puts back.
    fn strip_tail(&self, payload: Bytes) -> Result<Bytes, StreamError> {
        let tail = self.profile.stripped_tail();
        if tail.is_empty() {
            return Ok(payload);
        }
        if !payload.ends_with(tail) {
            return Err(StreamError::Encoding {
                id: self.id,
                source: crate::EncodingError::Compressor {
                    message: format!(
                        "a `{}` frame does not end with the flush tail",
                        self.profile.name()
                    ),
                },
            });
        }
        Ok(payload.slice(..payload.len() - tail.len()))
    }

    fn take_begin(&mut self) -> StreamFlags {
        if std::mem::take(&mut self.begin_pending) {
            StreamFlags::STREAM_BEGIN
        } else {
            StreamFlags::empty()
        }
    }

    fn count_frame(&mut self, wire_len: usize, encoded: bool) {
        self.stats.frames += 1;
        self.stats.wire_bytes += wire_len as u64;
        if encoded {
            self.stats.encoded_frames += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::IDENTITY;

    fn identity_stream(id: u8) -> OutgoingStream {
        OutgoingStream::new(
            StreamId(id),
            Side::Server,
            &Profiles::default(),
            &EncodingSettings::new(IDENTITY),
        )
        .unwrap()
    }

    #[test]
    fn is_send() {
        fn send<T: Send>() {}
        send::<OutgoingStream>();
    }

    #[test]
    fn parity_and_profile_are_checked() {
        let p = Profiles::default();
        assert!(matches!(
            OutgoingStream::new(StreamId(1), Side::Server, &p, &EncodingSettings::default()),
            Err(StreamError::NotOwnStream { .. })
        ));
        assert!(matches!(
            OutgoingStream::new(StreamId(1), Side::Client, &p, &EncodingSettings::new("nope")),
            Err(StreamError::UnknownProfile { name }) if name == "nope"
        ));
    }

    #[test]
    fn identity_cuts_flags_and_begin() {
        let mut s = identity_stream(2);
        s.set_max_frame_size(4);
        let mut out = Vec::new();
        s.push_data(
            RequestId(1),
            FrameType::BytesResponse,
            Bytes::from("abcdefgh"),
            true,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].stream_flags(), StreamFlags::STREAM_BEGIN);
        assert_eq!(out[0].flags(), CONTINUATION);
        assert_eq!(out[1].stream_flags(), StreamFlags::empty());
        assert_eq!(out[1].flags(), EOS);
        s.end(&mut out).unwrap();
        assert_eq!(out[1].stream_flags(), StreamFlags::STREAM_END);
        assert!(!s.is_open());
        assert_eq!(s.stats().frames, 2);
        assert_eq!(s.stats().wire_bytes, 2 * 8 + 8);
    }

    #[test]
    fn end_before_open_emits_nothing_and_needs_a_frame_after() {
        let mut s = identity_stream(2);
        let mut out = Vec::new();
        s.end(&mut out).unwrap();
        assert!(out.is_empty());
        s.push_data(
            RequestId(1),
            FrameType::BytesResponse,
            Bytes::from("x"),
            false,
            &mut out,
        )
        .unwrap();
        let mut later = Vec::new();
        assert!(matches!(
            s.end(&mut later),
            Err(StreamError::EndWithoutFrame { .. })
        ));
        assert!(s.is_open());
    }

    #[cfg(feature = "zstd")]
    #[test]
    fn flush_sizes_follow_the_frame_size() {
        let mut s = OutgoingStream::new(
            StreamId(2),
            Side::Server,
            &Profiles::default(),
            &EncodingSettings::new("zstd-8mb"),
        )
        .unwrap();
        assert_eq!(s.max_flush_raw_len(), 32_363);
        assert!(!s.one_pass_fits());
        s.set_max_frame_size(132_634);
        assert!(!s.one_pass_fits());
        s.set_max_frame_size(132_635);
        assert!(s.one_pass_fits());
        assert_eq!(s.max_flush_raw_len(), DEFAULT_MAX_FRAME_RAW_LEN);
        s.set_max_frame_size(28);
        assert_eq!(s.max_flush_raw_len(), 1);
        s.set_max_frame_size(27);
        assert_eq!(s.max_flush_raw_len(), 1); // and a flush may then span frames
        s.set_max_frame_size(1000);
        s.set_max_frame_raw_len(100);
        assert_eq!(s.max_flush_raw_len(), 100);
        assert_eq!(identity_stream(4).max_flush_raw_len(), 32768);
    }

    #[test]
    fn only_data_types_for_push_data() {
        let mut s = identity_stream(2);
        let mut out = Vec::new();
        assert!(matches!(
            s.push_data(
                RequestId(1),
                FrameType::TextOutput,
                Bytes::new(),
                true,
                &mut out
            ),
            Err(StreamError::NotDataFrameType { frame_type: 6, .. })
        ));
        assert!(out.is_empty());
    }
}
