//! `error-response` payloads: a message for people, flagged `protocol` (the connection is
//! to be closed) or `application` (the command failed).

use bytes::Bytes;

use super::check_limit;
use crate::error::PayloadError;
use crate::header::ErrorResponseFlags;

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// Whether it is a protocol or an application error.
    pub flags: ErrorResponseFlags,
    /// The message, as sent (UTF-8 expected, but not required of the peer).
    pub message: Bytes,
}

impl ErrorResponse {
    /// Reads an error response from a frame's flags and payload.
    pub fn from_frame_parts(flags: u8, payload: Bytes) -> Self {
        Self {
            flags: ErrorResponseFlags::from_bits_retain(flags),
            message: payload,
        }
    }

    /// The message, with invalid UTF-8 replaced.
    pub fn message_lossy(&self) -> String {
        String::from_utf8_lossy(&self.message).into_owned()
    }

    /// Checks that the message fits in one frame of `max_payload` bytes (the seed asserts
    /// the same against its frame size).
    pub fn check_len(&self, max_payload: usize) -> Result<(), PayloadError> {
        check_limit("error message length", self.message.len(), max_payload)
    }
}
