//! `progress` payloads (extension, type 0x07): how far a request got.
//!
//! ```text
//! u8 topic length | topic (UTF-8) | u64 LE position | u64 LE total
//! ```
//!
//! `total` 0 means the total is unknown; otherwise `position` is at most `total`. The
//! payload is exactly this long: at most 1 + 255 + 16 = 272 bytes, so it always fits in
//! one frame.

use bytes::{BufMut, Bytes, BytesMut};

use super::{check_limit, Reader};
use crate::error::PayloadError;

/// Longest topic, in bytes.
pub const MAX_TOPIC_LEN: usize = 255;

/// A progress report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// What is progressing, for people (`cat`, `bytes`...), at most 255 bytes of UTF-8.
    pub topic: String,
    /// How far it got, in the topic's unit.
    pub position: u64,
    /// Where it ends; 0 when unknown.
    pub total: u64,
}

impl Progress {
    /// Parses a payload.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use hgframe_wire::payload::progress::Progress;
    /// let p = Progress { topic: "cat".into(), position: 5, total: 10 };
    /// let payload = p.encode()?;
    /// assert_eq!(&payload[..4], b"\x03cat");
    /// assert_eq!(Progress::parse(&payload)?, p);
    /// # Ok::<(), hgframe_wire::PayloadError>(())
    /// ```
    pub fn parse(payload: &Bytes) -> Result<Self, PayloadError> {
        let mut r = Reader::new(payload);
        let len = usize::from(r.u8("topic length")?);
        let topic = r.take(len, "topic")?;
        let topic = std::str::from_utf8(&topic)
            .map_err(|_| PayloadError::Encoding {
                what: "progress topic",
                encoding: "UTF-8",
            })?
            .to_owned();
        let position = u64_le(&mut r, "position")?;
        let total = u64_le(&mut r, "total")?;
        if r.remaining() > 0 {
            return Err(PayloadError::Trailing {
                what: "progress",
                extra: r.remaining(),
            });
        }
        let p = Self {
            topic,
            position,
            total,
        };
        p.check()?;
        Ok(p)
    }

    /// Encodes the payload; fails if the topic is too long or the position is beyond a
    /// known total.
    pub fn encode(&self) -> Result<Bytes, PayloadError> {
        check_limit("progress topic length", self.topic.len(), MAX_TOPIC_LEN)?;
        self.check()?;
        let mut out = BytesMut::with_capacity(1 + self.topic.len() + 16);
        out.put_u8(self.topic.len() as u8);
        out.put_slice(self.topic.as_bytes());
        out.put_u64_le(self.position);
        out.put_u64_le(self.total);
        Ok(out.freeze())
    }

    fn check(&self) -> Result<(), PayloadError> {
        if self.total != 0 && self.position > self.total {
            return Err(PayloadError::Limit {
                limit: "progress position",
                value: usize::try_from(self.position).unwrap_or(usize::MAX),
                max: usize::try_from(self.total).unwrap_or(usize::MAX),
            });
        }
        Ok(())
    }
}

fn u64_le(r: &mut Reader<'_>, what: &'static str) -> Result<u64, PayloadError> {
    let b = r.take(8, what)?;
    // `take` returned exactly 8 bytes.
    let le: [u8; 8] = b.as_ref().try_into().unwrap_or([0; 8]);
    Ok(u64::from_le_bytes(le))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_bytes() {
        let p = Progress {
            topic: "ab".into(),
            position: 1,
            total: 0x0102,
        };
        let want: &[u8] = b"\x02ab\x01\0\0\0\0\0\0\0\x02\x01\0\0\0\0\0\0";
        assert_eq!(p.encode().unwrap(), want);
    }

    #[test]
    fn malformed_payloads_are_errors() {
        let parse = |b: &'static [u8]| Progress::parse(&Bytes::from_static(b));
        assert!(matches!(parse(b""), Err(PayloadError::Truncated { .. })));
        assert!(matches!(
            parse(b"\x05ab"),
            Err(PayloadError::Truncated { .. })
        ));
        assert!(matches!(
            parse(b"\x00\x01\0\0\0\0\0\0\0\0\0\0\0\0\0\0"),
            Err(PayloadError::Truncated { what: "total", .. })
        ));
        assert!(matches!(
            parse(b"\x01\xff\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"),
            Err(PayloadError::Encoding { .. })
        ));
        assert!(matches!(
            parse(b"\x00\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x07"),
            Err(PayloadError::Trailing { extra: 1, .. })
        ));
        // Position 3 beyond total 2.
        assert!(matches!(
            parse(b"\x00\x03\0\0\0\0\0\0\0\x02\0\0\0\0\0\0\0"),
            Err(PayloadError::Limit { .. })
        ));
        let long = Progress {
            topic: "t".repeat(256),
            position: 0,
            total: 0,
        };
        assert!(matches!(long.encode(), Err(PayloadError::Limit { .. })));
    }

    proptest! {
        #[test]
        fn what_encodes_parses_back(topic in "\\PC{0,60}", position: u64, total: u64) {
            let p = Progress { topic, position, total };
            match p.encode() {
                Ok(payload) => {
                    prop_assert!(payload.len() <= 1 + MAX_TOPIC_LEN + 16);
                    prop_assert_eq!(Progress::parse(&payload).unwrap(), p);
                }
                Err(_) => prop_assert!(
                    p.topic.len() > MAX_TOPIC_LEN || (p.total != 0 && p.position > p.total)
                ),
            }
        }

        #[test]
        fn any_bytes_parse_or_fail_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let payload = Bytes::from(bytes);
            if let Ok(p) = Progress::parse(&payload) {
                prop_assert_eq!(p.encode().unwrap(), payload);
            }
        }
    }
}
