//! `stream-settings` payloads: u8 profile-name length, the profile name (ASCII), then
//! bytes the profile may define.

use bytes::{BufMut, Bytes, BytesMut};

use super::{check_limit, Reader};
use crate::error::PayloadError;

/// The content-encoding settings of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// The content-encoding profile's name (ASCII, at most 255 bytes).
    pub profile: String,
    /// Bytes the profile may define (empty for `identity` and `zstd-8mb`).
    pub parameters: Bytes,
}

impl StreamSettings {
    /// Settings naming `profile` with no parameters.
    pub fn new(profile: impl Into<String>) -> Self {
        Self {
            profile: profile.into(),
            parameters: Bytes::new(),
        }
    }

    /// Parses a payload.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use hgframe_wire::payload::stream_settings::StreamSettings;
    /// let s = StreamSettings::parse(&Bytes::from_static(b"\x08zstd-8mb"))?;
    /// assert_eq!(s.profile, "zstd-8mb");
    /// assert_eq!(s.encode()?, Bytes::from_static(b"\x08zstd-8mb"));
    /// # Ok::<(), hgframe_wire::PayloadError>(())
    /// ```
    pub fn parse(payload: &Bytes) -> Result<Self, PayloadError> {
        let mut r = Reader::new(payload);
        let len = usize::from(r.u8("profile name length")?);
        let name = r.take(len, "profile name")?;
        if !name.is_ascii() {
            return Err(PayloadError::Encoding {
                what: "profile name",
                encoding: "ASCII",
            });
        }
        let profile = String::from_utf8_lossy(&name).into_owned();
        Ok(Self {
            profile,
            parameters: r.rest(),
        })
    }

    /// Encodes the payload.
    pub fn encode(&self) -> Result<Bytes, PayloadError> {
        check_limit("profile name length", self.profile.len(), 255)?;
        if !self.profile.is_ascii() {
            return Err(PayloadError::Encoding {
                what: "profile name",
                encoding: "ASCII",
            });
        }
        let mut out = BytesMut::with_capacity(1 + self.profile.len() + self.parameters.len());
        out.put_u8(self.profile.len() as u8);
        out.put_slice(self.profile.as_bytes());
        out.put_slice(&self.parameters);
        Ok(out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_round_trip() {
        let s = StreamSettings {
            profile: "x".into(),
            parameters: Bytes::from_static(b"\x01\x02"),
        };
        assert_eq!(StreamSettings::parse(&s.encode().unwrap()).unwrap(), s);
    }

    #[test]
    fn errors() {
        assert!(StreamSettings::parse(&Bytes::new()).is_err());
        assert!(StreamSettings::parse(&Bytes::from_static(b"\x05ab")).is_err());
        assert!(StreamSettings::parse(&Bytes::from_static(b"\x01\xff")).is_err());
        assert!(StreamSettings::new("é").encode().is_err());
        assert!(matches!(
            StreamSettings::new("a".repeat(256)).encode(),
            Err(PayloadError::Limit {
                value: 256,
                max: 255,
                ..
            })
        ));
    }
}
