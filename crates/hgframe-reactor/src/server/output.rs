//! The server's output queue: frames wait here until the driver pulls them with
//! `poll_transmit`, and in deferred-output mode until input has ended.

use std::collections::VecDeque;

use bytes::BytesMut;
use hgframe_wire::{Frame, FrameType, RequestId, StreamId};

/// A frame waiting to be transmitted.
#[derive(Debug)]
pub(crate) struct Queued {
    pub(crate) frame: Frame,
    /// The request whose response this frame ends: once it is transmitted, the request
    /// id may be used again.
    pub(crate) ends: Option<RequestId>,
}

/// Frames waiting to be transmitted, in order.
#[derive(Debug, Default)]
pub(crate) struct OutputQueue {
    frames: VecDeque<Queued>,
    /// Bytes the queued frames take on the wire.
    bytes: usize,
    /// Deferred output: nothing leaves until input has ended.
    held: bool,
}

impl OutputQueue {
    pub(crate) fn new(held: bool) -> Self {
        Self {
            held,
            ..Self::default()
        }
    }

    /// Releases held output (end of input).
    pub(crate) fn release(&mut self) {
        self.held = false;
    }

    /// Queues frames; the last one ends `ends`' response, if given.
    pub(crate) fn push_all(&mut self, frames: Vec<Frame>, ends: Option<RequestId>) {
        let n = frames.len();
        for (i, frame) in frames.into_iter().enumerate() {
            self.bytes += frame.encoded_len();
            self.frames.push_back(Queued {
                frame,
                ends: if i + 1 == n { ends } else { None },
            });
        }
    }

    /// The last queued frame of stream `id`, to stamp stream-end on it (flags only: its
    /// length does not change).
    pub(crate) fn last_of_stream(&mut self, id: StreamId) -> Option<&mut Frame> {
        self.frames
            .iter_mut()
            .rev()
            .map(|q| &mut q.frame)
            .find(|f| f.stream_id() == id)
    }

    /// Drops the queued frames of a cancelled request that the client can do without:
    /// raw frames in the middle of their stream. A frame that opens or ends a stream, or
    /// whose payload went through the stream's encoding (the next frames' decoding
    /// depends on it), stays. Returns how many were dropped.
    pub(crate) fn drop_request(&mut self, request: RequestId) -> usize {
        let before = self.frames.len();
        let mut freed = 0;
        self.frames.retain(|q| {
            let f = &q.frame;
            let keep = f.request_id() != request
                || !f.stream_flags().is_empty()
                || q.ends.is_some()
                || f.known_type() == Some(FrameType::StreamSettings);
            if !keep {
                freed += f.encoded_len();
            }
            keep
        });
        self.bytes -= freed;
        before - self.frames.len()
    }

    /// Whether a frame can be pulled now.
    pub(crate) fn is_ready(&self) -> bool {
        !self.held && !self.frames.is_empty()
    }

    /// Whether nothing is queued (held or not).
    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Bytes queued, held or not.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.bytes
    }

    /// The next frame, unless output is held.
    pub(crate) fn pop(&mut self) -> Option<Queued> {
        if self.held {
            return None;
        }
        let q = self.frames.pop_front()?;
        self.bytes -= q.frame.encoded_len();
        Some(q)
    }

    /// Encodes whole frames into `out` while they fit in `max_bytes` (always at least
    /// one frame when one is ready, so a small `max_bytes` cannot stall the output);
    /// calls `done` for each frame that ends a response.
    pub(crate) fn transmit(
        &mut self,
        out: &mut BytesMut,
        max_bytes: usize,
        mut done: impl FnMut(RequestId),
    ) -> usize {
        let mut written = 0;
        while let Some(next) = self.frames.front() {
            if self.held {
                break;
            }
            let len = next.frame.encoded_len();
            if written > 0 && written + len > max_bytes {
                break;
            }
            let Some(q) = self.pop() else { break };
            q.frame.encode(out);
            written += len;
            if let Some(r) = q.ends {
                done(r);
            }
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hgframe_wire::StreamFlags;

    fn frame(len: usize) -> Frame {
        Frame::new(
            RequestId(1),
            StreamId(2),
            StreamFlags::empty(),
            FrameType::BytesResponse,
            0x02,
            vec![0u8; len],
        )
        .unwrap()
    }

    #[test]
    fn transmit_respects_max_bytes_but_always_makes_progress() {
        let mut q = OutputQueue::new(false);
        q.push_all(vec![frame(10), frame(10), frame(10)], Some(RequestId(1)));
        assert_eq!(q.queued_bytes(), 54);
        let mut out = BytesMut::new();
        let mut ended = Vec::new();
        assert_eq!(q.transmit(&mut out, 5, |r| ended.push(r)), 18);
        assert_eq!(q.transmit(&mut out, 36, |r| ended.push(r)), 36);
        assert_eq!(ended, [RequestId(1)]);
        assert_eq!(out.len(), 54);
        assert!(q.is_empty());
        assert_eq!(q.transmit(&mut out, 100, |_| ()), 0);
    }

    #[test]
    fn a_cancelled_request_loses_only_the_frames_a_stream_can_do_without() {
        let mut q = OutputQueue::new(false);
        let mid = |_| frame(10);
        let begin = frame(10).with_stream_flags(StreamFlags::STREAM_BEGIN);
        let encoded = frame(10).with_stream_flags(StreamFlags::ENCODED);
        q.push_all(vec![begin, mid(1), encoded, mid(1)], None);
        let other = Frame::new(
            RequestId(3),
            StreamId(2),
            StreamFlags::empty(),
            FrameType::BytesResponse,
            0x01,
            vec![0u8; 4],
        )
        .unwrap();
        q.push_all(vec![other], None);
        let before = q.queued_bytes();
        assert_eq!(q.drop_request(RequestId(1)), 2);
        assert_eq!(q.queued_bytes(), before - 2 * 18);
        let left: Vec<_> = std::iter::from_fn(|| q.pop()).map(|q| q.frame).collect();
        assert_eq!(left.len(), 3);
        assert!(left[0].stream_flags().contains(StreamFlags::STREAM_BEGIN));
        assert!(left[1].stream_flags().contains(StreamFlags::ENCODED));
        assert_eq!(left[2].request_id(), RequestId(3));
    }

    #[test]
    fn held_output_waits_for_release() {
        let mut q = OutputQueue::new(true);
        q.push_all(vec![frame(1)], None);
        assert!(!q.is_ready());
        assert!(q.pop().is_none());
        assert_eq!(q.transmit(&mut BytesMut::new(), 100, |_| ()), 0);
        q.release();
        assert!(q.is_ready());
        assert!(q.pop().is_some());
    }
}
