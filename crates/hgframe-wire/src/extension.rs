//! Extensions: frames beyond the seed's, each used only between peers that agreed to it
//! (docs/protocol.md, "Extensions").
//!
//! The extension frame types are not [`crate::FrameType`]s: the seed's types keep their
//! names in the human-readable syntax, and an extension frame is judged by the reactor
//! only once negotiated. Its number is what travels:
//!
//! | type | extension | direction | payload |
//! | ---: | --- | --- | --- |
//! | 0x07 | `progress` | server to client | [`crate::payload::progress::Progress`] |
//! | 0x09 | `cancel` | client to server: stop this request; server to client: the request was stopped, nothing more follows for it | empty |
//!
//! Both take no flags (0). Which extensions a peer offers or accepted is an
//! [`Extensions`] set, written as a list of names (`cancel, progress`) in the HTTP header
//! [`HEADER`] and in the byte stream's `hello` argument `extensions`.

use std::fmt;

/// Frame type of a `progress` frame (the number Mercurial's later protocol used).
pub const PROGRESS: u8 = 0x07;

/// Frame type of a `cancel` frame.
pub const CANCEL: u8 = 0x09;

/// The HTTP header that offers extensions (request) and names those accepted (response).
pub const HEADER: &str = "HgFrame-Extensions";

/// One extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Extension {
    /// `cancel`: a client may stop a request it started.
    Cancel,
    /// `progress`: a server reports how far a long request got.
    Progress,
}

impl Extension {
    /// Every extension, in the order they are listed.
    pub const ALL: [Self; 2] = [Self::Cancel, Self::Progress];

    /// The extension's name in negotiation lists.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cancel => "cancel",
            Self::Progress => "progress",
        }
    }

    /// The frame type the extension adds.
    pub fn frame_type(self) -> u8 {
        match self {
            Self::Cancel => CANCEL,
            Self::Progress => PROGRESS,
        }
    }

    fn bit(self) -> u8 {
        match self {
            Self::Cancel => 1,
            Self::Progress => 2,
        }
    }
}

/// A set of extensions: those a peer offers, or those both sides accepted.
///
/// ```
/// use hgframe_wire::extension::{Extension, Extensions};
/// let offered = Extensions::parse("progress, cancel, zzz");
/// assert!(offered.contains(Extension::Cancel) && offered.contains(Extension::Progress));
/// let ours = Extensions::only(Extension::Cancel);
/// assert_eq!(ours.intersect(offered).to_string(), "cancel");
/// assert_eq!(Extensions::none().to_string(), "");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Extensions(u8);

impl Extensions {
    /// No extension: the seed's protocol.
    pub fn none() -> Self {
        Self(0)
    }

    /// Every extension this build knows.
    pub fn all() -> Self {
        Extension::ALL.into_iter().fold(Self::none(), Self::with)
    }

    /// Just `extension`.
    pub fn only(extension: Extension) -> Self {
        Self(extension.bit())
    }

    /// This set and `extension`.
    #[must_use]
    pub fn with(self, extension: Extension) -> Self {
        Self(self.0 | extension.bit())
    }

    /// Whether `extension` is in the set.
    pub fn contains(self, extension: Extension) -> bool {
        self.0 & extension.bit() != 0
    }

    /// The set as a number (for an atomic cell); [`Self::from_bits`] reads it back.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// The set from [`Self::bits`]; bits of no extension are dropped.
    pub fn from_bits(bits: u8) -> Self {
        Self(bits & Self::all().0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// What either set holds.
    #[must_use]
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// What both sets hold: the extensions in use once a server accepts what a client
    /// offers.
    #[must_use]
    pub fn intersect(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// Reads a list of names separated by commas (blanks around them ignored). Names
    /// this build does not know are skipped: an offer may name extensions of a newer
    /// peer.
    pub fn parse(list: &str) -> Self {
        list.split(',')
            .map(str::trim)
            .filter_map(|name| Extension::ALL.into_iter().find(|e| e.name() == name))
            .fold(Self::none(), Self::with)
    }

    /// The extensions of the set, in list order.
    pub fn iter(self) -> impl Iterator<Item = Extension> {
        Extension::ALL
            .into_iter()
            .filter(move |e| self.contains(*e))
    }
}

impl fmt::Display for Extensions {
    /// The list form: names joined with `, ` (empty for no extension).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(e.name())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_and_skip_unknown_names() {
        assert_eq!(Extensions::parse(""), Extensions::none());
        assert_eq!(Extensions::parse(" cancel ,progress,"), Extensions::all());
        assert_eq!(Extensions::parse("Cancel, xyz"), Extensions::none());
        for set in [
            Extensions::none(),
            Extensions::only(Extension::Cancel),
            Extensions::only(Extension::Progress),
            Extensions::all(),
        ] {
            assert_eq!(Extensions::parse(&set.to_string()), set);
        }
        assert_eq!(Extensions::all().to_string(), "cancel, progress");
    }

    #[test]
    fn extension_types_are_the_undefined_seed_numbers() {
        // Neither collides with a type the seed defines.
        for e in Extension::ALL {
            assert!(crate::FrameType::try_from(e.frame_type()).is_err());
        }
    }
}
