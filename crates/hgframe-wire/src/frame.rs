//! A whole frame: a header and its payload, held as [`Bytes`] so that decoding slices
//! the input buffer instead of copying it.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::FrameError;
use crate::header::{
    FrameHeader, FrameType, RequestId, StreamFlags, StreamId, HEADER_LEN, MAX_PAYLOAD_LEN,
};

/// Payloads shorter than this are copied next to their header by
/// [`Frame::encode_vectored`]; longer ones are passed on as shared chunks.
pub const INLINE_PAYLOAD_MAX: usize = 256;

/// A frame of the protocol.
///
/// A `Frame` always fits on the wire: its constructor checks that the type and flags fit
/// in 4 bits and the payload length in 24 bits, so [`Frame::encode`] cannot fail.
///
/// ```
/// use hgframe_wire::{Frame, FrameType, RequestId, StreamFlags, StreamId};
/// let frame = Frame::new(
///     RequestId(1),
///     StreamId(1),
///     StreamFlags::STREAM_BEGIN,
///     FrameType::CommandName,
///     0x01, // eos
///     "customreadonly",
/// )?;
/// assert_eq!(&frame.to_bytes()[..8], &[0x0e, 0, 0, 1, 0, 1, 1, 0x11]);
/// # Ok::<(), hgframe_wire::FrameError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    request_id: RequestId,
    stream_id: StreamId,
    stream_flags: StreamFlags,
    frame_type: u8,
    flags: u8,
    payload: Bytes,
}

impl Frame {
    /// A frame of a defined type. Fails only when the payload exceeds 16777215 bytes or
    /// `flags` does not fit in 4 bits.
    pub fn new(
        request_id: RequestId,
        stream_id: StreamId,
        stream_flags: StreamFlags,
        frame_type: FrameType,
        flags: u8,
        payload: impl Into<Bytes>,
    ) -> Result<Self, FrameError> {
        Self::from_raw(
            request_id,
            stream_id,
            stream_flags,
            frame_type as u8,
            flags,
            payload,
        )
    }

    /// A frame with a raw type number (0..=15), defined or not.
    pub fn from_raw(
        request_id: RequestId,
        stream_id: StreamId,
        stream_flags: StreamFlags,
        frame_type: u8,
        flags: u8,
        payload: impl Into<Bytes>,
    ) -> Result<Self, FrameError> {
        if frame_type > 0x0f {
            return Err(FrameError::TypeOutOfRange(frame_type));
        }
        if flags > 0x0f {
            return Err(FrameError::FlagsOutOfRange(flags));
        }
        let payload = payload.into();
        check_payload_len(payload.len())?;
        Ok(Self {
            request_id,
            stream_id,
            stream_flags,
            frame_type,
            flags,
            payload,
        })
    }

    /// Builds a frame from a decoded header and its payload (the header's length is
    /// taken from the payload).
    pub(crate) fn from_header(header: &FrameHeader, payload: Bytes) -> Self {
        Self {
            request_id: header.request_id,
            stream_id: header.stream_id,
            stream_flags: header.stream_flags,
            frame_type: header.frame_type & 0x0f,
            flags: header.flags & 0x0f,
            payload,
        }
    }

    /// The request this frame belongs to.
    pub fn request_id(&self) -> RequestId {
        self.request_id
    }

    /// The stream this frame travels on.
    pub fn stream_id(&self) -> StreamId {
        self.stream_id
    }

    /// The stream flags.
    pub fn stream_flags(&self) -> StreamFlags {
        self.stream_flags
    }

    /// The raw type number (0..=15).
    pub fn frame_type(&self) -> u8 {
        self.frame_type
    }

    /// The frame type, if the protocol defines it.
    pub fn known_type(&self) -> Option<FrameType> {
        FrameType::try_from(self.frame_type).ok()
    }

    /// The raw flags (0..=15); their meaning depends on the type.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// The payload as it is on the wire.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Takes the payload out of the frame.
    pub fn into_payload(self) -> Bytes {
        self.payload
    }

    /// The header this frame has on the wire.
    pub fn header(&self) -> FrameHeader {
        FrameHeader {
            length: self.payload.len(),
            request_id: self.request_id,
            stream_id: self.stream_id,
            stream_flags: self.stream_flags,
            frame_type: self.frame_type,
            flags: self.flags,
        }
    }

    /// The same frame on another stream.
    pub fn with_stream_id(mut self, stream_id: StreamId) -> Self {
        self.stream_id = stream_id;
        self
    }

    /// The same frame with other stream flags.
    pub fn with_stream_flags(mut self, stream_flags: StreamFlags) -> Self {
        self.stream_flags = stream_flags;
        self
    }

    /// The same frame with another payload (for instance after content encoding).
    pub fn with_payload(mut self, payload: Bytes) -> Result<Self, FrameError> {
        check_payload_len(payload.len())?;
        self.payload = payload;
        Ok(self)
    }

    /// Bytes this frame takes on the wire.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Appends the frame's bytes to `dst`, reserving exactly once.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(self.encoded_len());
        dst.put_slice(&self.header().to_bytes());
        dst.put_slice(&self.payload);
    }

    /// The frame's bytes in a new buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out.freeze()
    }

    /// Appends the frame as chunks for a vectored write, without copying large payloads:
    /// the header (and a payload shorter than [`INLINE_PAYLOAD_MAX`], copied inline, as h2
    /// does for small DATA frames) goes into `scratch` and is split off as one chunk; a
    /// larger payload is pushed as its own chunk, shared, not copied.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use hgframe_wire::Frame;
    /// let frame = Frame::from_human(&format!("1 2 0 bytes-response eos {}", "x".repeat(4096)))?;
    /// let (mut scratch, mut chunks) = (BytesMut::new(), Vec::new());
    /// frame.encode_vectored(&mut scratch, &mut chunks);
    /// assert_eq!(chunks.len(), 2);
    /// assert_eq!(chunks.concat(), frame.to_bytes());
    /// # Ok::<(), hgframe_wire::HumanSyntaxError>(())
    /// ```
    pub fn encode_vectored(&self, scratch: &mut BytesMut, chunks: &mut Vec<Bytes>) {
        if self.payload.len() < INLINE_PAYLOAD_MAX {
            self.encode(scratch);
            chunks.push(scratch.split().freeze());
        } else {
            scratch.put_slice(&self.header().to_bytes());
            chunks.push(scratch.split().freeze());
            chunks.push(self.payload.clone());
        }
    }

    /// The header's bytes and the payload, for vectored writes that do not copy the
    /// payload (`Buf::chain`, `write_vectored`).
    pub fn to_parts(&self) -> ([u8; HEADER_LEN], Bytes) {
        (self.header().to_bytes(), self.payload.clone())
    }
}

fn check_payload_len(len: usize) -> Result<(), FrameError> {
    if len > MAX_PAYLOAD_LEN {
        return Err(FrameError::PayloadTooLarge {
            len,
            max: MAX_PAYLOAD_LEN,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_md_vector() {
        let frame = Frame::new(
            RequestId(1),
            StreamId(1),
            StreamFlags::STREAM_BEGIN,
            FrameType::CommandName,
            1,
            "customreadonly",
        )
        .unwrap();
        let mut want = vec![0x0e, 0x00, 0x00, 0x01, 0x00, 0x01, 0x01, 0x11];
        want.extend_from_slice(b"customreadonly");
        assert_eq!(frame.to_bytes(), want);
        assert_eq!(frame.encoded_len(), want.len());
    }

    #[test]
    fn constructor_enforces_field_widths() {
        let f = |t, fl, len| {
            Frame::from_raw(
                RequestId(0),
                StreamId(0),
                StreamFlags::empty(),
                t,
                fl,
                vec![0u8; len],
            )
        };
        assert_eq!(f(16, 0, 0), Err(FrameError::TypeOutOfRange(16)));
        assert_eq!(f(1, 16, 0), Err(FrameError::FlagsOutOfRange(16)));
        assert!(f(15, 15, MAX_PAYLOAD_LEN).is_ok());
        assert_eq!(
            f(1, 0, MAX_PAYLOAD_LEN + 1),
            Err(FrameError::PayloadTooLarge {
                len: MAX_PAYLOAD_LEN + 1,
                max: MAX_PAYLOAD_LEN
            })
        );
    }

    #[test]
    fn largest_length_encodes_in_24_bits() {
        let frame = Frame::from_raw(
            RequestId(0),
            StreamId(0),
            StreamFlags::empty(),
            4,
            0,
            vec![0u8; MAX_PAYLOAD_LEN],
        )
        .unwrap();
        assert_eq!(&frame.to_bytes()[..3], &[0xff, 0xff, 0xff]);
    }
}
