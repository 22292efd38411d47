//! `identity`: no change. Always supported; a stream without `stream-settings` is
//! identity.

use super::{ContentDecoder, ContentEncoder, EncodingError, EncodingSettings, Profile};

/// The name of the `identity` profile.
pub const IDENTITY: &str = "identity";

/// The `identity` profile.
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

impl Profile for Identity {
    fn name(&self) -> &str {
        IDENTITY
    }

    fn is_identity(&self) -> bool {
        true
    }

    fn encoder(&self, _: &EncodingSettings) -> Result<Box<dyn ContentEncoder>, EncodingError> {
        Ok(Box::new(IdentityCodec))
    }

    fn decoder(&self, parameters: &[u8]) -> Result<Box<dyn ContentDecoder>, EncodingError> {
        if !parameters.is_empty() {
            return Err(EncodingError::UnexpectedParameters {
                profile: IDENTITY.into(),
                len: parameters.len(),
            });
        }
        Ok(Box::new(IdentityCodec))
    }
}

/// Copies its input. Used only when a peer explicitly sets `identity` and still marks
/// frames `encoded`; an identity stream of ours never encodes.
#[derive(Debug, Clone, Copy)]
struct IdentityCodec;

impl ContentEncoder for IdentityCodec {
    fn encode_flush(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), EncodingError> {
        out.extend_from_slice(input);
        Ok(())
    }

    fn max_encoded_len(&self, input_len: usize) -> usize {
        input_len
    }

    fn set_level(&mut self, _level: i32) -> Result<(), EncodingError> {
        Ok(())
    }

    fn level(&self) -> i32 {
        0
    }

    fn end_unit(&mut self, _out: &mut Vec<u8>) -> Result<(), EncodingError> {
        Ok(())
    }
}

impl ContentDecoder for IdentityCodec {
    fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_out: usize,
    ) -> Result<(), EncodingError> {
        if input.len() > max_out {
            return Err(EncodingError::TooLarge { limit: max_out });
        }
        out.extend_from_slice(input);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_within_the_cap() {
        let mut d = Identity.decoder(b"").unwrap();
        let mut out = Vec::new();
        d.decode(b"abc", &mut out, 3).unwrap();
        assert_eq!(out, b"abc");
        assert!(matches!(
            d.decode(b"abcd", &mut out, 3),
            Err(EncodingError::TooLarge { limit: 3 })
        ));
        assert!(Identity.decoder(b"x").is_err());
        let mut e = Identity.encoder(&EncodingSettings::default()).unwrap();
        e.encode_flush(b"xy", &mut out).unwrap();
        assert_eq!(out, b"abcxy");
        assert!(Identity.check_precompressed(b"x").is_err());
    }
}
