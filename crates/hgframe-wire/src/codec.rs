//! A tokio-util [`Decoder`]/[`Encoder`] pair, so any `AsyncRead`/`AsyncWrite` can be
//! wrapped in `tokio_util::codec::Framed` (enable the `tokio-util` feature).
//!
//! ```
//! use tokio_util::codec::{Decoder, Encoder};
//! use bytes::BytesMut;
//! use hgframe_wire::{codec::FrameCodec, Frame};
//! let mut codec = FrameCodec::default();
//! let mut buf = BytesMut::new();
//! codec.encode(Frame::from_human("1 1 stream-begin command-name eos x")?, &mut buf)?;
//! let back = codec.decode(&mut buf)?.expect("a frame");
//! assert_eq!(back.payload().as_ref(), b"x");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::decoder::FrameDecoder;
use crate::error::DecodeError;
use crate::frame::Frame;

/// Errors of [`FrameCodec`]: malformed frames, or I/O underneath.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The bytes did not make valid frames.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Frames over a byte stream.
#[derive(Debug, Clone, Default)]
pub struct FrameCodec {
    decoder: FrameDecoder,
}

impl FrameCodec {
    /// A codec whose decoder accepts payloads up to `max` bytes.
    pub fn with_max_payload_len(max: usize) -> Self {
        Self {
            decoder: FrameDecoder::with_max_payload_len(max),
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        Ok(self.decoder.decode(src)?)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        Ok(self.decoder.decode_eof(src)?)
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        frame.encode(dst);
        Ok(())
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        frame.encode(dst);
        Ok(())
    }
}
