//! `[extensions]` in `neo.toml`: the PostgreSQL extensions every region database needs, and
//! the schema that holds them.
//!
//! An extension belongs to a database, not to a tenant schema, and the migrator rightly
//! cannot create one per tenant: the plan creates a missing extension once per region (when
//! the login role may: a trusted extension and `CREATE` on the database), and every
//! migration runs with the extension schema on its search path after the target schema.

use toml::Spanned;

use super::diagnostic::{Diagnostics, SourceText};
use super::raw::RawExtensions;
use super::state::Extensions;

/// The schema extensions live in when `[extensions] schema` is not given: PostgreSQL's own
/// default.
pub const DEFAULT_SCHEMA: &str = "public";

/// Schemas neo-reconcile manages itself, which cannot hold extensions.
const RESERVED: [&str; 2] = ["neo_reconcile", "admin"];

/// Whether `name` may name an extension: lowercase letters, digits, `_` and `-`
/// (`uuid-ossp`), starting with a letter, at most 63 bytes.
fn valid_extension(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 63
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Whether `name` may name the extension schema: a plain lowercase identifier, not one of
/// PostgreSQL's (`pg_*`) nor one neo-reconcile manages.
fn valid_schema(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 63
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.starts_with("pg_")
        && !name.starts_with("tenant_")
        && !name.starts_with("archived_")
        && !RESERVED.contains(&name)
}

/// Reads `[extensions]`; a mistake is reported and the entry left out.
pub(super) fn check_extensions(
    diags: &mut Diagnostics,
    src: &SourceText,
    raw: Option<&Spanned<RawExtensions>>,
    region_sets: &[&str],
) -> Extensions {
    let mut out = Extensions {
        schema: DEFAULT_SCHEMA.to_string(),
        names: Vec::new(),
    };
    let Some(raw) = raw.map(Spanned::get_ref) else {
        return out;
    };
    if let Some(schema) = &raw.schema {
        let name = schema.get_ref();
        if !valid_schema(name) || region_sets.contains(&name.as_str()) {
            diags.error(
                src,
                schema.span(),
                "extensions.schema",
                format!(
                    "invalid extension schema {name:?}: use a plain lowercase identifier of at most 63 bytes that is not pg_*, tenant_*, archived_*, neo_reconcile, admin or a region-scope set"
                ),
            );
        } else {
            out.schema = name.clone();
        }
    }
    for name in &raw.names {
        let n = name.get_ref();
        if !valid_extension(n) {
            diags.error(
                src,
                name.span(),
                "extensions.names",
                format!("invalid extension name {n:?}: use the name CREATE EXTENSION takes, such as \"pg_trgm\" or \"uuid-ossp\""),
            );
        } else if out.names.contains(n) {
            diags.error(
                src,
                name.span(),
                "extensions.names",
                format!("extension {n:?} is listed twice"),
            );
        } else {
            out.names.push(n.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_and_schema_names() {
        for ok in ["pg_trgm", "citext", "uuid-ossp", "pgcrypto", "btree_gin"] {
            assert!(valid_extension(ok), "{ok}");
        }
        for bad in ["", "PG_TRGM", "1x", "a b", "x;drop", "\"q\""] {
            assert!(!valid_extension(bad), "{bad}");
        }
        for ok in ["public", "extensions", "_ext"] {
            assert!(valid_schema(ok), "{ok}");
        }
        for bad in [
            "pg_catalog",
            "neo_reconcile",
            "admin",
            "tenant_x",
            "archived_x",
            "Ext",
            "a-b",
            "",
        ] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }
}
