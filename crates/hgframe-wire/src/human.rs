//! The human-readable frame syntax (`docs/cli.md`), one frame per line:
//!
//! ```text
//! <request-id> <stream-id> <stream-flags> <type> <flags> <payload>
//! ```
//!
//! Flags are names or decimal integers joined with `|` (`0` for none); the payload is
//! everything after the fifth space, with the escapes `\xNN`, `\n`, `\r`, `\t`, `\0`,
//! `\\` and `\'`. [`Frame::to_human`] prints names where they are known and escapes the
//! payload so that [`Frame::from_human`] turns the line back into the same bytes.

use bytes::Bytes;

use crate::error::HumanSyntaxError;
use crate::frame::Frame;
use crate::header::{FrameType, RequestId, StreamFlags, StreamId, STREAM_FLAG_NAMES};

impl Frame {
    /// Parses one line of the human-readable syntax.
    ///
    /// ```
    /// use hgframe_wire::Frame;
    /// let f = Frame::from_human("1 1 stream-begin command-name eos customreadonly")?;
    /// assert_eq!(f.to_bytes().len(), 8 + 14);
    /// assert_eq!(f.to_human(), "1 1 stream-begin command-name eos customreadonly");
    /// # Ok::<(), hgframe_wire::HumanSyntaxError>(())
    /// ```
    pub fn from_human(line: &str) -> Result<Self, HumanSyntaxError> {
        let mut fields = line.splitn(6, ' ');
        let mut next = |n| fields.next().ok_or(HumanSyntaxError::MissingFields(n));
        let request_id = next(0)?;
        let stream_id = next(1)?;
        let stream_flags = next(2)?;
        let frame_type = next(3)?;
        let flags = next(4)?;
        let payload = fields.next().unwrap_or("");

        let request_id = integer("request-id", request_id, u32::from(u16::MAX))?;
        let stream_id = integer("stream-id", stream_id, u32::from(u8::MAX))?;
        let stream_flags = flag_set("stream-flags", stream_flags, STREAM_FLAG_NAMES, 0xff)?;
        let frame_type = match FrameType::from_name(frame_type) {
            Some(t) => t as u8,
            None => integer("type", frame_type, 0x0f)? as u8,
        };
        let names = FrameType::try_from(frame_type)
            .map(FrameType::flag_names)
            .unwrap_or_default();
        let flags = flag_set("flags", flags, names, 0x0f)?;
        Ok(Self::from_raw(
            RequestId(request_id as u16),
            StreamId(stream_id as u8),
            StreamFlags::from_bits_retain(stream_flags),
            frame_type,
            flags,
            unescape(payload)?,
        )?)
    }

    /// Prints the frame in the human-readable syntax (no trailing space when the payload
    /// is empty).
    pub fn to_human(&self) -> String {
        let type_name = self
            .known_type()
            .map_or_else(|| self.frame_type().to_string(), |t| t.name().to_string());
        let flag_names = self
            .known_type()
            .map(FrameType::flag_names)
            .unwrap_or_default();
        let mut line = format!(
            "{} {} {} {} {}",
            self.request_id(),
            self.stream_id(),
            format_flags(self.stream_flags().bits(), STREAM_FLAG_NAMES),
            type_name,
            format_flags(self.flags(), flag_names),
        );
        if !self.payload().is_empty() {
            line.push(' ');
            line.push_str(&escape(self.payload()));
        }
        line
    }
}

fn integer(field: &'static str, text: &str, max: u32) -> Result<u32, HumanSyntaxError> {
    let bad = || HumanSyntaxError::BadValue {
        field,
        value: text.to_string(),
        max,
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    text.parse::<u32>()
        .ok()
        .filter(|v| *v <= max)
        .ok_or_else(bad)
}

fn flag_set(
    field: &'static str,
    text: &str,
    names: &[(&str, u8)],
    max: u32,
) -> Result<u8, HumanSyntaxError> {
    let mut bits = 0u8;
    for part in text.split('|') {
        bits |= match names.iter().find(|(n, _)| *n == part) {
            Some((_, b)) => *b,
            None => integer(field, part, max)? as u8,
        };
    }
    Ok(bits)
}

fn format_flags(bits: u8, names: &[(&str, u8)]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut left = bits;
    for (name, bit) in names {
        if bits & bit != 0 {
            parts.push((*name).to_string());
            left &= !bit;
        }
    }
    if left != 0 {
        parts.push(left.to_string());
    }
    if parts.is_empty() {
        "0".to_string()
    } else {
        parts.join("|")
    }
}

/// Escapes a payload for the human syntax: printable ASCII as is (backslash doubled),
/// `\n`, `\r`, `\t`, and `\xNN` for every other byte. NUL prints as `\x00`, not `\0`,
/// so that a digit after it cannot be read as an octal escape by other tools.
pub fn escape(payload: &[u8]) -> String {
    let mut out = String::with_capacity(payload.len());
    for &b in payload {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// Reverses [`escape`]; also accepts `\'`, and any non-ASCII text as its UTF-8 bytes.
pub fn unescape(text: &str) -> Result<Bytes, HumanSyntaxError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let bad = |why| HumanSyntaxError::BadEscape { at: i, why };
        let (byte, len) = match bytes.get(i + 1) {
            Some(b'\\') => (b'\\', 2),
            Some(b'n') => (b'\n', 2),
            Some(b'r') => (b'\r', 2),
            Some(b't') => (b'\t', 2),
            Some(b'0') => (0, 2),
            Some(b'\'') => (b'\'', 2),
            Some(b'x') => {
                // Exactly two hex digits: `from_str_radix` alone would also take a sign
                // (`\x+f`), which the seed's `\xNN` never meant.
                let digit = |at: usize| {
                    bytes
                        .get(at)
                        .and_then(|d| char::from(*d).to_digit(16))
                        .ok_or_else(|| bad("\\x needs two hex digits"))
                };
                let v = digit(i + 2)? * 16 + digit(i + 3)?;
                let v = u8::try_from(v).map_err(|_| bad("\\x needs two hex digits"))?;
                (v, 4)
            }
            Some(_) => {
                return Err(bad(
                    "unknown escape (use \\xNN, \\n, \\r, \\t, \\0, \\\\ or \\')",
                ))
            }
            None => return Err(bad("lone backslash at the end")),
        };
        out.push(byte);
        i += len;
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_smoke_vectors() {
        let hex = |f: Frame| {
            f.to_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        assert_eq!(
            hex(
                Frame::from_human("1 1 0 command-argument eoa \\x04\\x00\\x09\\x00key3key3value")
                    .unwrap()
            ),
            "1100000100010022040009006b6579336b65793376616c7565"
        );
        assert_eq!(
            hex(Frame::from_human("3 2 3 4 2 hi").unwrap()),
            "0200000300020342".to_string() + "6869"
        );
        assert_eq!(
            hex(Frame::from_human("5 4 0 5 2 bad").unwrap()),
            "0300000500040052626164"
        );
    }

    #[test]
    fn names_and_leftover_bits() {
        let f = Frame::from_human("7 9 stream-begin|encoded|64 bytes-response continuation|8 x")
            .unwrap();
        assert_eq!(
            f.to_human(),
            "7 9 stream-begin|encoded|64 bytes-response continuation|8 x"
        );
        let f = Frame::from_human("1 1 0 9 15 ").unwrap();
        assert_eq!(f.to_human(), "1 1 0 9 15");
        assert_eq!(f.payload().len(), 0);
        let f = Frame::from_human("1 1 0 text-output 0").unwrap();
        assert_eq!(f.payload().len(), 0);
    }

    #[test]
    fn escapes_round_trip() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(&unescape(&escape(&all)).unwrap()[..], &all[..]);
        assert_eq!(&unescape("a\\'b c").unwrap()[..], b"a'b c");
    }

    #[test]
    fn errors_say_what() {
        assert_eq!(
            Frame::from_human("1 1 0"),
            Err(HumanSyntaxError::MissingFields(3))
        );
        assert!(matches!(
            Frame::from_human("70000 1 0 1 1 x"),
            Err(HumanSyntaxError::BadValue {
                field: "request-id",
                ..
            })
        ));
        assert!(matches!(
            Frame::from_human("1 256 0 1 1 x"),
            Err(HumanSyntaxError::BadValue {
                field: "stream-id",
                ..
            })
        ));
        assert!(matches!(
            Frame::from_human("1 1 0 16 1 x"),
            Err(HumanSyntaxError::BadValue { field: "type", .. })
        ));
        assert!(matches!(
            Frame::from_human("1 1 0 1 eoa x"),
            Err(HumanSyntaxError::BadValue { field: "flags", .. })
        ));
        assert!(matches!(
            Frame::from_human("1 1 0 1 -1 x"),
            Err(HumanSyntaxError::BadValue { .. })
        ));
        assert!(matches!(
            Frame::from_human("1 1 0 1 1 \\q"),
            Err(HumanSyntaxError::BadEscape { at: 0, .. })
        ));
        assert!(matches!(
            Frame::from_human("1 1 0 1 1 ab\\x4"),
            Err(HumanSyntaxError::BadEscape { at: 2, .. })
        ));
        assert!(matches!(
            Frame::from_human("1 1 0 1 1 \\"),
            Err(HumanSyntaxError::BadEscape { .. })
        ));
    }

    #[test]
    fn hex_escape_takes_exactly_two_hex_digits() {
        // A sign is not a hex digit: the seed's `\xNN` means two digits, nothing else.
        for bad in [
            "\\x+f",
            "\\x-f",
            "\\x+0",
            "\\x f",
            "\\xg0",
            "\\x0g",
            "\\x\u{e9}",
        ] {
            assert!(
                matches!(
                    unescape(bad),
                    Err(HumanSyntaxError::BadEscape { at: 0, .. })
                ),
                "{bad:?} must be refused"
            );
        }
        assert_eq!(&unescape("\\xfF\\x00\\xA0").unwrap()[..], b"\xff\x00\xa0");
    }
}
