//! Accept lists: which profiles a peer takes, most preferred first.
//!
//! Over HTTP the client sends them in the `HgFrame-Encodings` request header
//! (`zstd-8mb, identity`); absent means `identity` only. A sender then picks with
//! [`super::Profiles::negotiate`].

/// The most entries [`parse_accept_list`] keeps (an accept list is peer input).
pub const MAX_ACCEPT_ENTRIES: usize = 32;

/// Parses an accept list: names separated by commas, whitespace around them ignored, so
/// are empty entries, duplicates and anything after a `;` (room for parameters). At most
/// [`MAX_ACCEPT_ENTRIES`] names are kept.
///
/// ```
/// use hgframe_stream::parse_accept_list;
/// assert_eq!(parse_accept_list(" zstd-8mb ,identity,, zstd-8mb"), ["zstd-8mb", "identity"]);
/// ```
pub fn parse_accept_list(header_value: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for entry in header_value.split(',') {
        let name = entry.split(';').next().unwrap_or_default().trim();
        if name.is_empty() || names.iter().any(|n| n == name) {
            continue;
        }
        if names.len() == MAX_ACCEPT_ENTRIES {
            break;
        }
        names.push(name.to_owned());
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_bounds() {
        assert!(parse_accept_list("").is_empty());
        assert_eq!(parse_accept_list("identity"), ["identity"]);
        assert_eq!(parse_accept_list("a;q=1, b ; x"), ["a", "b"]);
        let many: Vec<String> = (0..100).map(|i| format!("p{i}")).collect();
        assert_eq!(parse_accept_list(&many.join(",")).len(), MAX_ACCEPT_ENTRIES);
    }
}
