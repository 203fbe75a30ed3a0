//! `[credentials]` of a region file: exactly one source (`vault_kv`, `vault_database_role` or
//! `env`), the KV field names, and `set_role`. Only locations and names are checked here;
//! no credential value is ever read from the tree.

use toml::Spanned;

use super::diagnostic::{Diagnostics, SourceText};
use super::raw::RawCredentials;
use super::region::{CredentialSource, Credentials};

/// Checks a region's `[credentials]`; `None` (with diagnostics) when anything is invalid.
pub(super) fn check(
    diags: &mut Diagnostics,
    src: &SourceText,
    creds: &Spanned<RawCredentials>,
) -> Option<Credentials> {
    let c = creds.get_ref();
    let source = check_source(diags, src, creds);
    let mut ok = source.is_some();
    let is_kv = matches!(source, Some(CredentialSource::VaultKv { .. }));
    let mut field = |name: &str, value: &Option<Spanned<String>>, diags: &mut Diagnostics| {
        let v = value.as_ref()?;
        let problem = if source.is_some() && !is_kv {
            Some(format!("{name} applies to vault_kv only"))
        } else if v.get_ref().is_empty() || v.get_ref().contains(char::is_whitespace) {
            Some(format!(
                "invalid value {:?}: use the name of a field of the KV secret",
                v.get_ref()
            ))
        } else {
            None
        };
        if let Some(message) = problem {
            diags.error(src, v.span(), format!("credentials.{name}"), message);
            ok = false;
        }
        Some(v.get_ref().clone())
    };
    let username_field = field("username_field", &c.username_field, diags);
    let password_field = field("password_field", &c.password_field, diags);
    let set_role = c.set_role.as_ref().and_then(|r| {
        if is_role_name(r.get_ref()) {
            Some(r.get_ref().clone())
        } else {
            diags.error(
                src,
                r.span(),
                "credentials.set_role",
                format!(
                    "invalid value {:?}: use a PostgreSQL role name such as \"neo_migrator\" (lowercase letters, digits and '_', at most 63 bytes)",
                    r.get_ref()
                ),
            );
            ok = false;
            None
        }
    });
    if !ok {
        return None;
    }
    let source = match source? {
        CredentialSource::VaultKv { path, .. } => CredentialSource::VaultKv {
            path,
            username_field: username_field.unwrap_or_else(|| "username".into()),
            password_field: password_field.unwrap_or_else(|| "password".into()),
        },
        other => other,
    };
    Some(Credentials { source, set_role })
}

/// Checks that exactly one source is given, and its value.
fn check_source(
    diags: &mut Diagnostics,
    src: &SourceText,
    creds: &Spanned<RawCredentials>,
) -> Option<CredentialSource> {
    let c = creds.get_ref();
    let given: Vec<(&str, &Spanned<String>)> = [
        ("vault_kv", &c.vault_kv),
        ("vault_database_role", &c.vault_database_role),
        ("env", &c.env),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();
    let [(kind, value)] = given.as_slice() else {
        let message = if given.is_empty() {
            "no credential source: set exactly one of vault_kv, vault_database_role or env"
                .to_string()
        } else {
            format!(
                "{} credential sources given ({}): set exactly one",
                given.len(),
                given.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
            )
        };
        diags.error(src, creds.span(), "credentials", message);
        return None;
    };
    let v = value.get_ref();
    let valid = match *kind {
        "env" => is_env_prefix(v),
        "vault_kv" => is_vault_path(v) && v.contains('/'),
        _ => is_vault_path(v) && database_role_parts(v).is_some(),
    };
    if !valid {
        let hint = match *kind {
            "env" => "an environment variable prefix such as \"NEO_US_EAST\" (uppercase letters, digits and '_'); neo-reconcile reads <PREFIX>_USER and <PREFIX>_PASSWORD",
            "vault_kv" => "a Vault KV v2 path <mount>/<path> such as \"secret/neo/regions/us-east\", without a leading '/'",
            _ => "a Vault database role path <mount>/creds/<role> such as \"database/creds/neo-migrator-us\", without a leading '/'",
        };
        diags.error(
            src,
            value.span(),
            format!("credentials.{kind}"),
            format!("invalid value {v:?}: use {hint}"),
        );
        return None;
    }
    Some(match *kind {
        "vault_kv" => CredentialSource::VaultKv {
            path: v.clone(),
            username_field: String::new(),
            password_field: String::new(),
        },
        "vault_database_role" => CredentialSource::VaultDatabaseRole(v.clone()),
        _ => CredentialSource::Env(v.clone()),
    })
}

/// `<mount>/creds/<role>` split into the mount and the role.
pub fn database_role_parts(path: &str) -> Option<(&str, &str)> {
    let (mount, role) = path.rsplit_once("/creds/")?;
    (!mount.is_empty() && !role.is_empty() && !role.contains('/')).then_some((mount, role))
}

fn is_vault_path(v: &str) -> bool {
    !v.is_empty()
        && !v.starts_with('/')
        && !v.ends_with('/')
        && !v.contains("//")
        && !v.contains(char::is_whitespace)
}

fn is_env_prefix(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_uppercase()
        && b.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
}

/// A plain, lowercase PostgreSQL role name, which needs no quoting.
fn is_role_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_role_paths_split_into_mount_and_role() {
        assert_eq!(
            database_role_parts("database/creds/neo-us"),
            Some(("database", "neo-us"))
        );
        assert_eq!(
            database_role_parts("team/db/creds/neo"),
            Some(("team/db", "neo"))
        );
        assert_eq!(database_role_parts("database/neo"), None);
        assert_eq!(database_role_parts("database/creds/"), None);
        assert_eq!(database_role_parts("database/creds/a/b"), None);
    }

    #[test]
    fn env_prefixes_are_uppercase() {
        assert!(is_env_prefix("NEO_US_EAST") && !is_env_prefix("neo") && !is_env_prefix("1A"));
    }

    #[test]
    fn role_names_are_plain_lowercase_identifiers() {
        assert!(is_role_name("neo_migrator"));
        assert!(!is_role_name("Neo"));
        assert!(!is_role_name("neo migrator"));
        assert!(!is_role_name("x\"; DROP"));
        assert!(!is_role_name(&"a".repeat(64)));
    }
}
