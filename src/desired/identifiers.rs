//! The PostgreSQL identifiers neo-reconcile derives from names in the tree, and the rule that
//! none of them may be longer than PostgreSQL keeps.
//!
//! PostgreSQL truncates an identifier longer than 63 bytes (`NAMEDATALEN - 1`) with only a
//! NOTICE, so two long names could silently become one schema or one role, and neo-reconcile
//! would look for a name the database does not have. Every identifier built from a name in the
//! tree is therefore listed here, per entity ([`of_tenant`], [`of_region_set`],
//! [`of_database`]), and [`check`] rejects a name when any of its identifiers is too long. The
//! rule does not rely on the syntax rules of the names (such as the slug's 40 characters):
//! when one of them is relaxed, or a new identifier is derived, the check still holds as long
//! as the new identifier is listed here.

use std::ops::Range;

use super::diagnostic::{Diagnostics, SourceText};

/// The longest identifier PostgreSQL keeps whole, in bytes (`NAMEDATALEN - 1`).
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// The date suffix of an archived schema's name, as shown in diagnostics: always 8 digits.
pub const ARCHIVE_DATE: &str = "yyyymmdd";

/// The schema holding a tenant's data.
pub fn tenant_schema(slug: &str) -> String {
    format!("tenant_{slug}")
}

/// The NOLOGIN role owning a tenant's schema and objects.
pub fn tenant_owner_role(slug: &str) -> String {
    format!("tenant_{slug}_owner")
}

/// The NOLOGIN role granting read/write on a tenant's schema.
pub fn tenant_rw_role(slug: &str) -> String {
    format!("tenant_{slug}_rw")
}

/// The name an archived tenant's schema is renamed to; `date` is `yyyymmdd`.
pub fn archived_schema(slug: &str, date: &str) -> String {
    format!("archived_{slug}_{date}")
}

/// The NOLOGIN role owning a region-scope set's schema (the same as `sql::region_set_owner`).
pub fn region_set_owner(set: &str) -> String {
    format!("{set}_owner")
}

/// One identifier derived from a name in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    /// What it is, as diagnostics say it: "schema", "owner role", ...
    pub what: &'static str,
    pub name: String,
}

impl Derived {
    fn new(what: &'static str, name: String) -> Derived {
        Derived { what, name }
    }
}

/// Every identifier derived from a tenant's slug.
pub fn of_tenant(slug: &str) -> Vec<Derived> {
    vec![
        Derived::new("schema", tenant_schema(slug)),
        Derived::new("owner role", tenant_owner_role(slug)),
        Derived::new("rw role", tenant_rw_role(slug)),
        Derived::new("archived schema", archived_schema(slug, ARCHIVE_DATE)),
    ]
}

/// Every identifier derived from the name of a region-scope schema set.
pub fn of_region_set(set: &str) -> Vec<Derived> {
    vec![
        Derived::new("schema", set.to_string()),
        Derived::new("owner role", region_set_owner(set)),
    ]
}

/// The identifier of a database name (a region's or the control plane's): the name itself.
pub fn of_database(database: &str) -> Vec<Derived> {
    vec![Derived::new("database", database.to_string())]
}

/// The message for a name whose derived identifiers do not all fit, or `None` when they do.
/// `what` names the name ("slug", "schema set name"), as the message starts with it.
pub fn too_long(what: &str, name: &str, derived: &[Derived]) -> Option<String> {
    let long: Vec<&Derived> = derived
        .iter()
        .filter(|d| d.name.len() > MAX_IDENTIFIER_BYTES)
        .collect();
    let excess = long.iter().map(|d| d.name.len()).max()? - MAX_IDENTIFIER_BYTES;
    let list = long
        .iter()
        .map(|d| format!("{} {:?} ({} bytes)", d.what, d.name, d.name.len()))
        .collect::<Vec<_>>()
        .join(", ");
    let fits = name.len().saturating_sub(excess);
    Some(format!(
        "{what} {name:?} gives {list}, longer than the {MAX_IDENTIFIER_BYTES} bytes PostgreSQL keeps \
         (it would silently truncate the name): shorten the {what} to at most {fits} bytes"
    ))
}

/// Reports a name whose derived identifiers are too long, at the name's span. Returns whether
/// they all fit.
pub(super) fn check(
    diags: &mut Diagnostics,
    src: &SourceText,
    span: Range<usize>,
    field: &str,
    what: &str,
    name: &str,
    derived: &[Derived],
) -> bool {
    match too_long(what, name, derived) {
        None => true,
        Some(message) => {
            diags.error(src, span, field, message);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::load::is_slug;

    #[test]
    fn derived_names_are_the_ones_the_rest_of_the_program_uses() {
        assert_eq!(
            region_set_owner("platform_common"),
            crate::sql::region_set_owner("platform_common")
        );
        let names: Vec<String> = of_tenant("acme").into_iter().map(|d| d.name).collect();
        assert_eq!(
            names,
            [
                "tenant_acme",
                "tenant_acme_owner",
                "tenant_acme_rw",
                "archived_acme_yyyymmdd"
            ]
        );
        assert_eq!(archived_schema("acme", "20261123").len(), names[3].len());
    }

    /// The longest slug the slug rule accepts must give identifiers that all fit, so that the
    /// slug rule and the 63-byte rule cannot drift apart unnoticed.
    #[test]
    fn the_longest_valid_slug_fits_every_derived_identifier() {
        let longest = (1..=200)
            .rev()
            .map(|n| "a".repeat(n))
            .find(|s| is_slug(s))
            .expect("some slug is valid");
        assert_eq!(too_long("slug", &longest, &of_tenant(&longest)), None);
    }

    #[test]
    fn sixty_three_bytes_fit_and_sixty_four_do_not() {
        let set = "s".repeat(57);
        assert_eq!(
            too_long("schema set name", &set, &of_region_set(&set)),
            None
        );
        let set = "s".repeat(58);
        let message = too_long("schema set name", &set, &of_region_set(&set)).unwrap();
        assert!(
            message.contains(&format!("owner role \"{set}_owner\" (64 bytes)")),
            "{message}"
        );
        assert!(
            message.ends_with("shorten the schema set name to at most 57 bytes"),
            "{message}"
        );
        assert_eq!(
            too_long(
                "database name",
                &"d".repeat(63),
                &of_database(&"d".repeat(63))
            ),
            None
        );
        assert!(too_long(
            "database name",
            &"d".repeat(64),
            &of_database(&"d".repeat(64))
        )
        .is_some());
    }

    /// Every identifier that is too long is named, and the advice makes the longest one fit.
    #[test]
    fn every_identifier_that_is_too_long_is_named() {
        // tenant_<52> is 59 bytes, the rw role 62: they fit. The owner role is 65 bytes and the
        // archived schema 70.
        let slug = "x".repeat(52);
        let message = too_long("slug", &slug, &of_tenant(&slug)).unwrap();
        let expected = format!(
            "slug \"{slug}\" gives owner role \"tenant_{slug}_owner\" (65 bytes), \
             archived schema \"archived_{slug}_yyyymmdd\" (70 bytes), longer than the 63 bytes"
        );
        assert!(message.starts_with(&expected), "{message}");
        assert!(
            message.ends_with("shorten the slug to at most 45 bytes"),
            "{message}"
        );
    }

    /// Bytes are counted, not characters.
    #[test]
    fn length_is_counted_in_bytes() {
        let name = "é".repeat(32); // 64 bytes, 32 characters.
        assert!(too_long("database name", &name, &of_database(&name)).is_some());
    }
}
