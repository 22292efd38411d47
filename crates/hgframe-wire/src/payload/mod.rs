//! Payload formats, one per file (as h2's `frame/` does).
//!
//! `command-name`, `command-data` and `bytes-response` payloads are raw bytes and need no
//! codec. `progress` is an extension's payload (docs/protocol.md, "Extensions").

pub mod command_argument;
pub mod error_response;
pub mod progress;
pub mod stream_settings;
pub mod text_output;

use bytes::Bytes;

use crate::error::PayloadError;

/// A cursor over a payload that slices fields out of it without copying.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    payload: &'a Bytes,
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(payload: &'a Bytes) -> Self {
        Self { payload, at: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.at
    }

    pub(crate) fn remaining(&self) -> usize {
        self.payload.len() - self.at
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<Bytes, PayloadError> {
        if self.remaining() < n {
            return Err(PayloadError::Truncated {
                what,
                at: self.payload.len(),
                need: n - self.remaining(),
            });
        }
        let out = self.payload.slice(self.at..self.at + n);
        self.at += n;
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, PayloadError> {
        let b = self.take(1, what)?;
        Ok(b.first().copied().unwrap_or_default())
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, PayloadError> {
        let b = self.take(2, what)?;
        match *b {
            [lo, hi] => Ok(u16::from_le_bytes([lo, hi])),
            _ => Ok(0),
        }
    }

    pub(crate) fn rest(&mut self) -> Bytes {
        let out = self.payload.slice(self.at..);
        self.at = self.payload.len();
        out
    }
}

/// Checks `value <= max` for a named limit.
pub(crate) fn check_limit(
    limit: &'static str,
    value: usize,
    max: usize,
) -> Result<(), PayloadError> {
    if value > max {
        return Err(PayloadError::Limit { limit, value, max });
    }
    Ok(())
}
