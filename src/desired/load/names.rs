//! The rules for names written in the tree (tenant slugs, region names, PostgreSQL
//! identifiers such as database and schema set names), and the list of known names that an
//! "unknown name" message offers instead.

use toml::Spanned;

use super::tree::Cx;
use crate::desired::diagnostic::SourceText;
use crate::desired::identifiers;

impl Cx {
    /// Checks a database name: a plain identifier that PostgreSQL keeps whole.
    pub(super) fn check_database(
        &mut self,
        src: &SourceText,
        value: &Spanned<String>,
        field: &str,
    ) -> bool {
        let name = value.get_ref();
        self.check_identifier(src, value, field, "database")
            && identifiers::check(
                &mut self.diags,
                src,
                value.span(),
                field,
                "database name",
                name,
                &identifiers::of_database(name),
            )
    }

    /// Checks that a name can be used as a PostgreSQL identifier without quoting.
    pub(super) fn check_identifier(
        &mut self,
        src: &SourceText,
        value: &Spanned<String>,
        field: &str,
        what: &str,
    ) -> bool {
        let v = value.get_ref();
        let ok = is_identifier(v);
        if !ok {
            self.diags.error(
                src,
                value.span(),
                field,
                format!("invalid {what} name {v:?}: use 1 to 63 lowercase letters, digits and '_', starting with a letter or '_'"),
            );
        }
        ok
    }
}

/// A tenant slug: 2 to 40 lowercase letters, digits and `_`, starting with a letter.
pub(in crate::desired) fn is_slug(s: &str) -> bool {
    let b = s.as_bytes();
    (2..=40).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// A region name: 1 to 63 lowercase letters, digits and `-`, starting with a letter.
pub(super) fn is_region_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// A PostgreSQL identifier that needs no quoting: 1 to 63 lowercase letters, digits and
/// `_`, starting with a letter or `_`.
pub(super) fn is_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// Names joined with commas, or `(none)` when there is none.
pub(super) fn list_or_none<'a>(
    names: impl Iterator<Item = &'a (impl AsRef<str> + 'a + ?Sized)>,
) -> String {
    let names: Vec<&str> = names.map(AsRef::as_ref).collect();
    if names.is_empty() {
        "(none)".to_string()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(
            is_slug("acme")
                && is_slug("a1_b")
                && !is_slug("a")
                && !is_slug("1a")
                && !is_slug("Acme")
                && !is_slug("a-b")
        );
        assert!(is_slug(&"a".repeat(40)) && !is_slug(&"a".repeat(41)));
        assert!(is_identifier("neo_us") && !is_identifier("neo-us") && !is_identifier(""));
    }
}
