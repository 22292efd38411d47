//! Builders that produce the same frames as the seed's generators for the same input.
//!
//! Builders leave the stream flags empty: stamping `stream-begin`, `stream-end` and
//! `encoded` is the job of the stream that sends the frames (`hgframe-stream`). With a
//! fresh stream the result is byte for byte what the seed's `createcommandframes`,
//! `createbytesresponseframesfrombytes`, `createerrorframe` and `createtextoutputframe`
//! yield.

use std::io::Read;

use bytes::{Bytes, BytesMut};

use crate::error::{BuildError, PayloadError};
use crate::frame::Frame;
use crate::header::{
    BytesResponseFlags, CommandArgumentFlags, CommandDataFlags, CommandNameFlags,
    ErrorResponseFlags, FrameType, RequestId, StreamFlags, StreamId, DEFAULT_MAX_FRAME_SIZE,
};
use crate::payload::{command_argument, text_output};

/// Where and how big: the request and stream of the frames, and the payload size at which
/// data is cut (the seed's `DEFAULT_MAX_FRAME_SIZE`, 32768, by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTarget {
    /// The request the frames belong to.
    pub request_id: RequestId,
    /// The stream the frames travel on.
    pub stream_id: StreamId,
    /// Largest payload of one frame (at least 1).
    pub max_frame_size: usize,
}

impl FrameTarget {
    /// Frames of `request_id` on `stream_id`, cut at 32768 bytes.
    pub fn new(request_id: RequestId, stream_id: StreamId) -> Self {
        Self {
            request_id,
            stream_id,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
        }
    }

    /// The same target with another frame size (at least 1 byte).
    pub fn with_max_frame_size(mut self, max_frame_size: usize) -> Self {
        self.max_frame_size = max_frame_size.max(1);
        self
    }

    fn frame(&self, frame_type: FrameType, flags: u8, payload: Bytes) -> Result<Frame, BuildError> {
        Ok(Frame::new(
            self.request_id,
            self.stream_id,
            StreamFlags::empty(),
            frame_type,
            flags,
            payload,
        )?)
    }
}

/// The frames of a command request: `command-name`, one or more `command-argument` frames
/// per argument (in name order), then `command-data` frames read from `data`.
///
/// Data is read in pieces of the frame size; a full piece gets `continuation`, a short one
/// `eos`, so data that is an exact multiple of the frame size ends with an empty `eos`
/// frame, as the seed does. An argument value longer than what fits in one frame spans
/// `continuation` frames (which the seed could not do).
///
/// ```
/// use bytes::Bytes;
/// use hgframe_wire::build::{command_frames, FrameTarget};
/// use hgframe_wire::{RequestId, StreamId};
/// let target = FrameTarget::new(RequestId(1), StreamId(1));
/// let args = [(Bytes::from("foo"), Bytes::from("bar"))];
/// let frames = command_frames(target, b"mycommand", args, None::<&[u8]>)?;
/// assert_eq!(frames.len(), 2);
/// # Ok::<(), hgframe_wire::BuildError>(())
/// ```
pub fn command_frames<R: Read>(
    target: FrameTarget,
    name: &[u8],
    args: impl IntoIterator<Item = (Bytes, Bytes)>,
    data: Option<R>,
) -> Result<Vec<Frame>, BuildError> {
    let mut args: Vec<(Bytes, Bytes)> = args.into_iter().collect();
    args.sort_by(|a, b| a.0.cmp(&b.0));
    let mut frames = command_head_frames(target, name, &args, data.is_some())?;
    if let Some(mut data) = data {
        let mut data_frames = CommandDataFrames::new(target);
        loop {
            let mut chunk = BytesMut::zeroed(target.max_frame_size);
            let n = read_full(&mut data, &mut chunk)?;
            chunk.truncate(n);
            let frame = data_frames.next_frame(chunk.freeze(), n < target.max_frame_size)?;
            frames.push(frame);
            if n < target.max_frame_size {
                break;
            }
        }
    }
    Ok(frames)
}

/// The `command-name` and `command-argument` frames of a command; `args` must be in the
/// order to send (the seed sorts them by name).
pub fn command_head_frames(
    target: FrameTarget,
    name: &[u8],
    args: &[(Bytes, Bytes)],
    have_data: bool,
) -> Result<Vec<Frame>, BuildError> {
    let mut flags = CommandNameFlags::empty();
    if !args.is_empty() {
        flags |= CommandNameFlags::HAVE_ARGS;
    }
    if have_data {
        flags |= CommandNameFlags::HAVE_DATA;
    }
    if flags.is_empty() {
        flags = CommandNameFlags::EOS;
    }
    let mut frames = vec![target.frame(
        FrameType::CommandName,
        flags.bits(),
        Bytes::copy_from_slice(name),
    )?];
    for (i, (name, value)) in args.iter().enumerate() {
        let last_arg = i + 1 == args.len();
        let (first, mut rest) = command_argument::encode_first(name, value, target.max_frame_size)?;
        let mut payload = first;
        loop {
            let last_frame = rest.is_empty();
            let mut f = CommandArgumentFlags::empty();
            if !last_frame {
                f |= CommandArgumentFlags::CONTINUATION;
            } else if last_arg {
                f |= CommandArgumentFlags::EOA;
            }
            frames.push(target.frame(FrameType::CommandArgument, f.bits(), payload)?);
            if last_frame {
                break;
            }
            payload = rest.split_to(rest.len().min(target.max_frame_size));
        }
    }
    Ok(frames)
}

/// Makes `command-data` frames for data handed over in pieces (each at most the frame
/// size): `continuation` on every piece but the last, `eos` on the last.
#[derive(Debug, Clone)]
pub struct CommandDataFrames {
    target: FrameTarget,
    done: bool,
}

impl CommandDataFrames {
    /// Data frames for `target`.
    pub fn new(target: FrameTarget) -> Self {
        Self {
            target,
            done: false,
        }
    }

    /// The frame for the next piece; `eos` marks the last.
    pub fn next_frame(&mut self, piece: Bytes, eos: bool) -> Result<Frame, BuildError> {
        if self.done {
            return Err(PayloadError::Limit {
                limit: "command-data frames after eos",
                value: 1,
                max: 0,
            }
            .into());
        }
        if piece.len() > self.target.max_frame_size {
            return Err(PayloadError::Limit {
                limit: "command-data piece length",
                value: piece.len(),
                max: self.target.max_frame_size,
            }
            .into());
        }
        self.done = eos;
        let flags = if eos {
            CommandDataFlags::EOS
        } else {
            CommandDataFlags::CONTINUATION
        };
        self.target
            .frame(FrameType::CommandData, flags.bits(), piece)
    }
}

/// `bytes-response` frames for `data`, cut at the frame size without copying: one `eos`
/// frame when the data fits (even empty), else `continuation` frames and a last `eos`.
///
/// ```
/// use bytes::Bytes;
/// use hgframe_wire::build::{bytes_response_frames, FrameTarget};
/// use hgframe_wire::{RequestId, StreamId};
/// let target = FrameTarget::new(RequestId(1), StreamId(2)).with_max_frame_size(4);
/// let frames: Vec<_> = bytes_response_frames(target, Bytes::from("abcdefgh")).collect();
/// assert_eq!(frames.len(), 2);
/// assert_eq!(frames[1].flags(), 0x02); // eos
/// ```
pub fn bytes_response_frames(target: FrameTarget, data: Bytes) -> BytesResponseFrames {
    BytesResponseFrames {
        target,
        data,
        done: false,
    }
}

/// The iterator of [`bytes_response_frames`].
#[derive(Debug, Clone)]
pub struct BytesResponseFrames {
    target: FrameTarget,
    data: Bytes,
    done: bool,
}

impl Iterator for BytesResponseFrames {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        if self.done {
            return None;
        }
        let size = self.target.max_frame_size.min(crate::MAX_PAYLOAD_LEN);
        let chunk = self.data.split_to(self.data.len().min(size));
        self.done = self.data.is_empty();
        let flags = if self.done {
            BytesResponseFlags::EOS
        } else {
            BytesResponseFlags::CONTINUATION
        };
        // The chunk is at most MAX_PAYLOAD_LEN, so the frame is always valid.
        self.target
            .frame(FrameType::BytesResponse, flags.bits(), chunk)
            .ok()
    }
}

/// An `error-response` frame; the message must fit in one frame.
pub fn error_frame(
    target: FrameTarget,
    message: &[u8],
    flags: ErrorResponseFlags,
) -> Result<Frame, BuildError> {
    crate::payload::check_limit("error message length", message.len(), target.max_frame_size)?;
    target.frame(
        FrameType::ErrorResponse,
        flags.bits(),
        Bytes::copy_from_slice(message),
    )
}

/// A `text-output` frame holding every atom; they must fit in one frame.
pub fn text_output_frame(
    target: FrameTarget,
    atoms: &[text_output::TextAtom],
) -> Result<Frame, BuildError> {
    let payload = text_output::encode(atoms, target.max_frame_size)?;
    target.frame(FrameType::TextOutput, 0, payload)
}

/// Reads until `buf` is full or the reader ends, as Python's `read(n)` on a file does.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(buf.get_mut(n..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A `cancel` frame (extension, type 0x09, empty payload, no flags) for
/// `target.request_id`: from a client, "stop this request"; from a server, "the request
/// was stopped, nothing more follows for it".
///
/// ```
/// use hgframe_wire::build::{cancel_frame, FrameTarget};
/// use hgframe_wire::{RequestId, StreamId};
/// let frame = cancel_frame(FrameTarget::new(RequestId(3), StreamId(1)))?;
/// assert_eq!(frame.to_bytes(), [0, 0, 0, 3, 0, 1, 0, 0x90][..]);
/// # Ok::<(), hgframe_wire::BuildError>(())
/// ```
pub fn cancel_frame(target: FrameTarget) -> Result<Frame, BuildError> {
    Ok(Frame::from_raw(
        target.request_id,
        target.stream_id,
        StreamFlags::empty(),
        crate::extension::CANCEL,
        0,
        Bytes::new(),
    )?)
}

/// A `progress` frame (extension, type 0x07, no flags).
pub fn progress_frame(
    target: FrameTarget,
    progress: &crate::payload::progress::Progress,
) -> Result<Frame, BuildError> {
    Ok(Frame::from_raw(
        target.request_id,
        target.stream_id,
        StreamFlags::empty(),
        crate::extension::PROGRESS,
        0,
        progress.encode()?,
    )?)
}
