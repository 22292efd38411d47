//! `command-argument` payloads.
//!
//! The first frame of an argument holds a 4-byte header (u16 LE name length, u16 LE value
//! length), the whole name, and the start of the value. When the value does not fit, the
//! frame has the `continuation` flag and each following argument frame of the request
//! carries only more value bytes, until the announced value length is reached; the last
//! frame of an argument has no `continuation` flag. (The seed left continuation frames
//! undefined; this is hgframe's definition, see `docs/protocol-decisions.md`.)

use bytes::{BufMut, Bytes, BytesMut};

use super::{check_limit, Reader};
use crate::error::PayloadError;

/// Size of the argument header: name length and value length.
pub const ARGUMENT_HEADER_LEN: usize = 4;

/// The first frame of an argument: its name, its total value length, and the part of the
/// value carried by this frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgumentHead {
    /// The argument's name (whole).
    pub name: Bytes,
    /// The value's total length, over every frame of the argument.
    pub value_len: usize,
    /// The value bytes carried by this frame.
    pub value_part: Bytes,
}

impl ArgumentHead {
    /// Parses the payload of an argument's first frame. The name must be whole; the value
    /// part must not exceed the announced length.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use hgframe_wire::payload::command_argument::ArgumentHead;
    /// let head = ArgumentHead::parse(&Bytes::from_static(b"\x03\x00\x03\x00foobar"))?;
    /// assert_eq!(&head.name[..], b"foo");
    /// assert!(head.is_complete());
    /// # Ok::<(), hgframe_wire::PayloadError>(())
    /// ```
    pub fn parse(payload: &Bytes) -> Result<Self, PayloadError> {
        let mut r = Reader::new(payload);
        let name_len = usize::from(r.u16("argument header")?);
        let value_len = usize::from(r.u16("argument header")?);
        let name = r.take(name_len, "argument name")?;
        let value_part = r.rest();
        if value_part.len() > value_len {
            return Err(PayloadError::Trailing {
                what: "argument value",
                extra: value_part.len() - value_len,
            });
        }
        Ok(Self {
            name,
            value_len,
            value_part,
        })
    }

    /// Whether the value is whole in this frame.
    pub fn is_complete(&self) -> bool {
        self.value_part.len() == self.value_len
    }
}

/// Encodes the payload of an argument's first frame: header, name, and as much of the
/// value as fits in `max_payload` bytes. Returns the payload and the value bytes that did
/// not fit (to send in continuation frames, at most `max_payload` bytes each).
///
/// Names and values are limited to 65535 bytes; the header and the whole name must fit in
/// the first frame.
pub fn encode_first(
    name: &[u8],
    value: &Bytes,
    max_payload: usize,
) -> Result<(Bytes, Bytes), PayloadError> {
    check_limit("argument name length", name.len(), usize::from(u16::MAX))?;
    check_limit("argument value length", value.len(), usize::from(u16::MAX))?;
    let head_len = ARGUMENT_HEADER_LEN + name.len();
    check_limit(
        "argument header and name in the first frame",
        head_len,
        max_payload,
    )?;
    let first_value = value.len().min(max_payload - head_len);
    let mut out = BytesMut::with_capacity(head_len + first_value);
    // Both lengths were checked against u16::MAX above.
    out.put_u16_le(name.len() as u16);
    out.put_u16_le(value.len() as u16);
    out.put_slice(name);
    out.put_slice(value.get(..first_value).unwrap_or_default());
    Ok((out.freeze(), value.slice(first_value..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_layout() {
        let (p, rest) = encode_first(b"key3", &Bytes::from_static(b"value"), 32768).unwrap();
        assert_eq!(&p[..], b"\x04\x00\x05\x00key3value");
        assert!(rest.is_empty());
    }

    #[test]
    fn value_spills_into_continuations() {
        let value = Bytes::from(vec![7u8; 100]);
        let (p, rest) = encode_first(b"k", &value, 20).unwrap();
        assert_eq!(p.len(), 20);
        assert_eq!(rest.len(), 100 - 15);
        let head = ArgumentHead::parse(&p).unwrap();
        assert_eq!(head.value_len, 100);
        assert_eq!(head.value_part.len(), 15);
        assert!(!head.is_complete());
    }

    #[test]
    fn name_must_fit_in_first_frame() {
        let err = encode_first(&[b'n'; 20], &Bytes::new(), 20).unwrap_err();
        assert_eq!(
            err,
            PayloadError::Limit {
                limit: "argument header and name in the first frame",
                value: 24,
                max: 20
            }
        );
    }

    #[test]
    fn malformed_heads() {
        let parse = |b: &'static [u8]| ArgumentHead::parse(&Bytes::from_static(b));
        assert!(matches!(
            parse(b"\x01"),
            Err(PayloadError::Truncated { .. })
        ));
        assert!(matches!(
            parse(b"\x05\x00\x00\x00abc"),
            Err(PayloadError::Truncated {
                what: "argument name",
                ..
            })
        ));
        assert!(matches!(
            parse(b"\x01\x00\x01\x00abc"),
            Err(PayloadError::Trailing { extra: 1, .. })
        ));
        assert!(encode_first(b"", &Bytes::from(vec![0u8; 65536]), 1 << 20).is_err());
    }
}
