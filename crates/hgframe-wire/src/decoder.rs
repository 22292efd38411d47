//! The incremental frame decoder: takes input in pieces of any size and yields whole
//! frames, in the style of tokio-util's `Decoder`.
//!
//! ```text
//!            8 bytes in, length <= max          length bytes in
//!  Header ------------------------------> Payload --------------> Header (yield frame)
//!    |  length > max                         |
//!    +---------------> Failed <--------------+  (decode_eof with bytes left: Truncated)
//! ```

use bytes::{Buf, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::frame::Frame;
use crate::header::{FrameHeader, DEFAULT_MAX_PAYLOAD_LEN, HEADER_LEN, MAX_PAYLOAD_LEN};

/// Decodes frames from a byte buffer that fills up over time.
///
/// "Need more bytes" is `Ok(None)`, never an error. The payload limit is checked as soon as
/// a header is complete, before any payload is buffered, and the decoder reserves at most
/// what the next step needs, so a peer cannot make it allocate more than
/// `max_payload_len + 8` bytes at once. Payloads are split off the input without copying.
///
/// ```
/// use bytes::BytesMut;
/// use hgframe_wire::FrameDecoder;
/// let mut decoder = FrameDecoder::new();
/// let mut buf = BytesMut::new();
/// buf.extend_from_slice(&[0x02, 0, 0, 1, 0, 1, 1, 0x11, b'h']);
/// assert!(decoder.decode(&mut buf)?.is_none()); // one payload byte missing
/// buf.extend_from_slice(b"i");
/// let frame = decoder.decode(&mut buf)?.expect("a whole frame");
/// assert_eq!(&frame.payload()[..], b"hi");
/// # Ok::<(), hgframe_wire::DecodeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_payload_len: usize,
    /// The header of the frame whose payload is awaited.
    pending: Option<FrameHeader>,
    /// Bytes consumed by whole frames so far (the offset of the next frame).
    consumed: u64,
    /// Frames yielded so far (the number of the next frame).
    frames: u64,
    failed: bool,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder accepting payloads up to [`DEFAULT_MAX_PAYLOAD_LEN`] (65535) bytes.
    pub fn new() -> Self {
        Self::with_max_payload_len(DEFAULT_MAX_PAYLOAD_LEN)
    }

    /// A decoder accepting payloads up to `max` bytes (clamped to 16777215).
    pub fn with_max_payload_len(max: usize) -> Self {
        Self {
            max_payload_len: max.min(MAX_PAYLOAD_LEN),
            pending: None,
            consumed: 0,
            frames: 0,
            failed: false,
        }
    }

    /// The largest payload accepted.
    pub fn max_payload_len(&self) -> usize {
        self.max_payload_len
    }

    /// Changes the largest payload accepted (after negotiation, for instance).
    pub fn set_max_payload_len(&mut self, max: usize) {
        self.max_payload_len = max.min(MAX_PAYLOAD_LEN);
    }

    /// Bytes consumed by whole frames: the input offset of the next frame.
    pub fn offset(&self) -> u64 {
        self.consumed
    }

    /// Number of frames decoded so far.
    pub fn frames_decoded(&self) -> u64 {
        self.frames
    }

    /// Whether the decoder has failed and will decode nothing more.
    pub fn has_failed(&self) -> bool {
        self.failed
    }

    /// Takes the next whole frame off the front of `src`, or returns `Ok(None)` when more
    /// bytes are needed.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        if self.failed {
            return Err(DecodeError::Failed);
        }
        let header = match self.pending {
            Some(header) => header,
            None => {
                let Some(head) = src.get(..HEADER_LEN) else {
                    return Ok(None);
                };
                let mut bytes = [0u8; HEADER_LEN];
                bytes.copy_from_slice(head);
                let header = FrameHeader::parse(&bytes);
                if header.length > self.max_payload_len {
                    self.failed = true;
                    return Err(DecodeError::PayloadTooLarge {
                        frame: self.frames,
                        offset: self.consumed,
                        length: header.length,
                        max: self.max_payload_len,
                    });
                }
                src.advance(HEADER_LEN);
                self.pending = Some(header);
                header
            }
        };
        if src.len() < header.length {
            // Reserve only what this frame still needs: bounded by the checked limit.
            src.reserve(header.length - src.len());
            return Ok(None);
        }
        let payload = src.split_to(header.length).freeze();
        Ok(Some(self.finish_frame(&header, payload)))
    }

    /// Like [`FrameDecoder::decode`], at the end of input: bytes left that do not make a
    /// whole frame are a [`DecodeError::Truncated`] error.
    pub fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        let (have, need) = match self.pending {
            Some(header) => (HEADER_LEN + src.len(), HEADER_LEN + header.length),
            None if src.is_empty() => return Ok(None),
            None => (src.len(), HEADER_LEN),
        };
        self.failed = true;
        Err(DecodeError::Truncated {
            frame: self.frames,
            offset: self.consumed,
            have,
            need,
        })
    }

    fn finish_frame(&mut self, header: &FrameHeader, payload: Bytes) -> Frame {
        self.pending = None;
        self.consumed += (HEADER_LEN + header.length) as u64;
        self.frames += 1;
        Frame::from_header(header, payload)
    }
}

/// Iterates over the frames in a complete buffer, slicing payloads out of it (no copy).
///
/// Yields `Err` once for malformed or truncated input, then stops.
///
/// ```
/// use bytes::Bytes;
/// use hgframe_wire::Frames;
/// let input = Bytes::from_static(&[0, 0, 0, 1, 0, 1, 1, 0x11]);
/// let frames: Vec<_> = Frames::new(input).collect::<Result<_, _>>()?;
/// assert_eq!(frames.len(), 1);
/// # Ok::<(), hgframe_wire::DecodeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Frames {
    input: Bytes,
    decoder: FrameDecoder,
    done: bool,
}

impl Frames {
    /// Frames of `input`, accepting payloads up to 65535 bytes.
    pub fn new(input: Bytes) -> Self {
        Self::with_decoder(input, FrameDecoder::new())
    }

    /// Frames of `input`, decoded with the limits of `decoder`.
    pub fn with_decoder(input: Bytes, decoder: FrameDecoder) -> Self {
        Self {
            input,
            decoder,
            done: false,
        }
    }

    /// The input offset of the next frame.
    pub fn offset(&self) -> u64 {
        self.decoder.offset()
    }
}

impl Iterator for Frames {
    type Item = Result<Frame, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let Some(head) = self.input.get(..HEADER_LEN) else {
            self.done = true;
            if self.input.is_empty() {
                return None;
            }
            return Some(Err(DecodeError::Truncated {
                frame: self.decoder.frames,
                offset: self.decoder.consumed,
                have: self.input.len(),
                need: HEADER_LEN,
            }));
        };
        let mut bytes = [0u8; HEADER_LEN];
        bytes.copy_from_slice(head);
        let header = FrameHeader::parse(&bytes);
        let need = HEADER_LEN + header.length;
        if header.length > self.decoder.max_payload_len {
            self.done = true;
            return Some(Err(DecodeError::PayloadTooLarge {
                frame: self.decoder.frames,
                offset: self.decoder.consumed,
                length: header.length,
                max: self.decoder.max_payload_len,
            }));
        }
        if self.input.len() < need {
            self.done = true;
            return Some(Err(DecodeError::Truncated {
                frame: self.decoder.frames,
                offset: self.decoder.consumed,
                have: self.input.len(),
                need,
            }));
        }
        let mut whole = self.input.split_to(need);
        whole.advance(HEADER_LEN);
        Some(Ok(self.decoder.finish_frame(&header, whole)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_bytes(len: usize) -> Vec<u8> {
        let mut v = vec![
            len as u8,
            (len >> 8) as u8,
            (len >> 16) as u8,
            1,
            0,
            1,
            0,
            0x40,
        ];
        v.extend(std::iter::repeat(0xab).take(len));
        v
    }

    #[test]
    fn one_byte_at_a_time() {
        let mut input = frame_bytes(3);
        input.extend(frame_bytes(0));
        let mut decoder = FrameDecoder::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in input {
            buf.extend_from_slice(&[b]);
            while let Some(f) = decoder.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].payload().len(), 3);
        assert_eq!(decoder.offset(), 11 + 8);
        assert!(decoder.decode_eof(&mut buf).unwrap().is_none());
    }

    #[test]
    fn limit_checked_on_header_before_payload() {
        let mut decoder = FrameDecoder::with_max_payload_len(10);
        let mut buf = BytesMut::from(&frame_bytes(11)[..8]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(DecodeError::PayloadTooLarge {
                frame: 0,
                offset: 0,
                length: 11,
                max: 10
            })
        );
        // It stays failed.
        assert_eq!(decoder.decode(&mut buf), Err(DecodeError::Failed));
        assert!(decoder.has_failed());
    }

    #[test]
    fn truncation_reports_frame_and_offset() {
        let mut input = frame_bytes(2);
        input.extend(&frame_bytes(5)[..10]);
        let mut decoder = FrameDecoder::new();
        let mut buf = BytesMut::from(&input[..]);
        assert!(decoder.decode(&mut buf).unwrap().is_some());
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(
            decoder.decode_eof(&mut buf),
            Err(DecodeError::Truncated {
                frame: 1,
                offset: 10,
                have: 10,
                need: 13
            })
        );
        let mut it = Frames::new(Bytes::from(input));
        assert!(it.next().unwrap().is_ok());
        assert_eq!(
            it.next(),
            Some(Err(DecodeError::Truncated {
                frame: 1,
                offset: 10,
                have: 10,
                need: 13
            }))
        );
        assert_eq!(it.next(), None);
    }

    #[test]
    fn partial_header_at_eof() {
        let mut decoder = FrameDecoder::new();
        let mut buf = BytesMut::from(&[1u8, 2, 3][..]);
        assert_eq!(
            decoder.decode_eof(&mut buf),
            Err(DecodeError::Truncated {
                frame: 0,
                offset: 0,
                have: 3,
                need: 8
            })
        );
    }

    #[test]
    fn payload_is_a_slice_of_the_input() {
        let input = Bytes::from(frame_bytes(100));
        let frame = Frames::new(input.clone()).next().unwrap().unwrap();
        let base = input.as_ptr() as usize;
        assert_eq!(frame.payload().as_ptr() as usize, base + 8);
    }

    #[test]
    fn raised_limit_accepts_long_frames() {
        let input = frame_bytes(70_000);
        let mut decoder = FrameDecoder::with_max_payload_len(MAX_PAYLOAD_LEN);
        let mut buf = BytesMut::from(&input[..]);
        assert_eq!(
            decoder.decode(&mut buf).unwrap().unwrap().payload().len(),
            70_000
        );
        assert!(FrameDecoder::new()
            .decode(&mut BytesMut::from(&input[..]))
            .is_err());
    }
}
