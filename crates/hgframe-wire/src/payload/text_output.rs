//! `text-output` payloads: a series of atoms, each a format string with labels and
//! arguments, for a client to render to people.
//!
//! One atom on the wire:
//!
//! ```text
//! u16 LE format length | u8 label count | u8 argument count |
//! u8 length per label  | u16 LE length per argument |
//! format (UTF-8) | labels (ASCII) | arguments (UTF-8)
//! ```
//!
//! All atoms of one message go in one frame.

use bytes::{BufMut, Bytes, BytesMut};

use super::{check_limit, Reader};
use crate::error::PayloadError;

/// Most labels, or arguments, in one atom.
pub const MAX_ITEMS: usize = 255;
/// Longest format string or argument, in bytes.
pub const MAX_STRING_LEN: usize = 65535;
/// Longest label, in bytes.
pub const MAX_LABEL_LEN: usize = 255;

/// One unit of formatted text (one `ui.write()` in Mercurial's terms).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TextAtom {
    /// The format string; knows only `%s` and `%%`.
    pub format: String,
    /// Labels a renderer may style the text with (ASCII).
    pub labels: Vec<String>,
    /// The values of the `%s` directives, in order.
    pub args: Vec<String>,
}

impl TextAtom {
    /// An atom with no labels.
    pub fn new(format: impl Into<String>, args: Vec<String>) -> Self {
        Self {
            format: format.into(),
            labels: Vec::new(),
            args,
        }
    }

    /// An atom from raw bytes, as the seed takes them: format and arguments decoded as
    /// UTF-8 with invalid sequences replaced, labels required to be ASCII.
    pub fn from_bytes(
        format: &[u8],
        args: &[&[u8]],
        labels: &[&[u8]],
    ) -> Result<Self, PayloadError> {
        let labels = labels
            .iter()
            .map(|l| {
                if l.is_ascii() {
                    Ok(String::from_utf8_lossy(l).into_owned())
                } else {
                    Err(PayloadError::Encoding {
                        what: "label",
                        encoding: "ASCII",
                    })
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            format: String::from_utf8_lossy(format).into_owned(),
            labels,
            args: args
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect(),
        })
    }

    /// Bytes this atom takes on the wire.
    pub fn encoded_len(&self) -> usize {
        4 + self.labels.len()
            + 2 * self.args.len()
            + self.format.len()
            + self.labels.iter().map(String::len).sum::<usize>()
            + self.args.iter().map(String::len).sum::<usize>()
    }

    /// Checks every limit of the format.
    pub fn validate(&self) -> Result<(), PayloadError> {
        check_limit("arguments per atom", self.args.len(), MAX_ITEMS)?;
        check_limit("labels per atom", self.labels.len(), MAX_ITEMS)?;
        check_limit("format string length", self.format.len(), MAX_STRING_LEN)?;
        for a in &self.args {
            check_limit("argument length", a.len(), MAX_STRING_LEN)?;
        }
        for l in &self.labels {
            check_limit("label length", l.len(), MAX_LABEL_LEN)?;
            if !l.is_ascii() {
                return Err(PayloadError::Encoding {
                    what: "label",
                    encoding: "ASCII",
                });
            }
        }
        Ok(())
    }

    fn encode_into(&self, out: &mut BytesMut) {
        // Every length was checked by `validate`.
        out.put_u16_le(self.format.len() as u16);
        out.put_u8(self.labels.len() as u8);
        out.put_u8(self.args.len() as u8);
        for l in &self.labels {
            out.put_u8(l.len() as u8);
        }
        for a in &self.args {
            out.put_u16_le(a.len() as u16);
        }
        out.put_slice(self.format.as_bytes());
        for l in &self.labels {
            out.put_slice(l.as_bytes());
        }
        for a in &self.args {
            out.put_slice(a.as_bytes());
        }
    }

    /// The text for people: `%s` replaced by the arguments in order, `%%` by `%`.
    ///
    /// ```
    /// use hgframe_wire::payload::text_output::TextAtom;
    /// let atom = TextAtom::new("%s files, 100%%\n", vec!["3".into()]);
    /// assert_eq!(atom.render()?, "3 files, 100%\n");
    /// # Ok::<(), hgframe_wire::PayloadError>(())
    /// ```
    pub fn render(&self) -> Result<String, PayloadError> {
        let mut out = String::with_capacity(self.format.len());
        let mut args = self.args.iter();
        let mut chars = self.format.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => out.push('%'),
                Some('s') => match args.next() {
                    Some(a) => out.push_str(a),
                    None => {
                        return Err(PayloadError::Format(format!(
                            "more %s than the {} arguments",
                            self.args.len()
                        )))
                    }
                },
                Some(other) => {
                    return Err(PayloadError::Format(format!(
                        "unknown directive %{other} (only %s and %% exist)"
                    )))
                }
                None => return Err(PayloadError::Format("ends with a lone %".into())),
            }
        }
        if args.next().is_some() {
            return Err(PayloadError::Format(format!(
                "fewer %s than the {} arguments",
                self.args.len()
            )));
        }
        Ok(out)
    }
}

/// Encodes atoms into one payload of at most `max_payload` bytes.
///
/// ```
/// use hgframe_wire::payload::text_output::{decode, encode, TextAtom};
/// let atoms = vec![TextAtom { format: "foo %s".into(), labels: vec!["l".into()], args: vec!["x".into()] }];
/// let payload = encode(&atoms, 32768)?;
/// assert_eq!(decode(&payload)?, atoms);
/// # Ok::<(), hgframe_wire::PayloadError>(())
/// ```
pub fn encode(atoms: &[TextAtom], max_payload: usize) -> Result<Bytes, PayloadError> {
    let mut total = 0usize;
    for atom in atoms {
        atom.validate()?;
        total += atom.encoded_len();
    }
    check_limit("text output in one frame", total, max_payload)?;
    let mut out = BytesMut::with_capacity(total);
    for atom in atoms {
        atom.encode_into(&mut out);
    }
    Ok(out.freeze())
}

/// Decodes every atom of a payload.
pub fn decode(payload: &Bytes) -> Result<Vec<TextAtom>, PayloadError> {
    let mut r = Reader::new(payload);
    let mut atoms = Vec::new();
    while r.remaining() > 0 {
        let format_len = usize::from(r.u16("atom header")?);
        let label_count = usize::from(r.u8("atom header")?);
        let arg_count = usize::from(r.u8("atom header")?);
        // At most 255 entries each: bounded, whatever the peer says.
        let mut label_lens = Vec::with_capacity(label_count);
        for _ in 0..label_count {
            label_lens.push(usize::from(r.u8("label lengths")?));
        }
        let mut arg_lens = Vec::with_capacity(arg_count);
        for _ in 0..arg_count {
            arg_lens.push(usize::from(r.u16("argument lengths")?));
        }
        let format = utf8(r.take(format_len, "format string")?, "format string")?;
        let mut labels = Vec::with_capacity(label_count);
        for len in label_lens {
            let l = r.take(len, "label")?;
            if !l.is_ascii() {
                return Err(PayloadError::Encoding {
                    what: "label",
                    encoding: "ASCII",
                });
            }
            labels.push(utf8(l, "label")?);
        }
        let mut args = Vec::with_capacity(arg_count);
        for len in arg_lens {
            args.push(utf8(r.take(len, "argument")?, "argument")?);
        }
        atoms.push(TextAtom {
            format,
            labels,
            args,
        });
    }
    debug_assert_eq!(r.position(), payload.len());
    Ok(atoms)
}

fn utf8(b: Bytes, what: &'static str) -> Result<String, PayloadError> {
    String::from_utf8(b.to_vec()).map_err(|_| PayloadError::Encoding {
        what,
        encoding: "UTF-8",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_vector_simple() {
        // createtextoutputframe(stream, 1, [(b'foo', [], [])]) in the seed's tests.
        let p = encode(&[TextAtom::new("foo", vec![])], 32768).unwrap();
        assert_eq!(&p[..], b"\x03\x00\x00\x00foo");
    }

    #[test]
    fn seed_vector_args_and_labels() {
        let atom = TextAtom::from_bytes(b"foo %s", &[b"val1"], &[b"label1"]).unwrap();
        let p = encode(&[atom], 32768).unwrap();
        assert_eq!(&p[..], b"\x06\x00\x01\x01\x06\x04\x00foo %slabel1val1");
    }

    #[test]
    fn every_limit_is_named() {
        let limit = |atom: TextAtom| match encode(&[atom], 1 << 24) {
            Err(PayloadError::Limit { limit, .. }) => limit,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            limit(TextAtom::new("", vec![String::new(); 256])),
            "arguments per atom"
        );
        assert_eq!(
            limit(TextAtom {
                labels: vec!["a".into(); 256],
                ..Default::default()
            }),
            "labels per atom"
        );
        assert_eq!(
            limit(TextAtom::new("x".repeat(65536), vec![])),
            "format string length"
        );
        assert_eq!(
            limit(TextAtom::new("", vec!["x".repeat(65536)])),
            "argument length"
        );
        assert_eq!(
            limit(TextAtom {
                labels: vec!["l".repeat(256)],
                ..Default::default()
            }),
            "label length"
        );
        assert!(matches!(
            encode(&[TextAtom::new("x".repeat(40000), vec![])], 32768),
            Err(PayloadError::Limit {
                limit: "text output in one frame",
                ..
            })
        ));
        assert!(TextAtom::from_bytes(b"", &[], &[b"\xff"]).is_err());
    }

    #[test]
    fn invalid_utf8_is_replaced_like_the_seed() {
        let atom = TextAtom::from_bytes(b"a\xffb", &[], &[]).unwrap();
        assert_eq!(atom.format, "a\u{fffd}b");
    }

    #[test]
    fn decode_rejects_bad_payloads() {
        assert!(decode(&Bytes::from_static(b"\x03\x00\x00")).is_err());
        assert!(decode(&Bytes::from_static(b"\x05\x00\x00\x00foo")).is_err());
        assert!(decode(&Bytes::from_static(b"\x01\x00\x00\x00\xff")).is_err());
        assert!(decode(&Bytes::from_static(b"\x00\x00\x01\x00\x01\xff")).is_err());
        assert_eq!(decode(&Bytes::new()).unwrap(), vec![]);
    }

    #[test]
    fn render_rules() {
        assert!(TextAtom::new("%d", vec![]).render().is_err());
        assert!(TextAtom::new("%s", vec![]).render().is_err());
        assert!(TextAtom::new("x", vec!["a".into()]).render().is_err());
        assert!(TextAtom::new("100%", vec![]).render().is_err());
    }
}
