//! The scan for plaintext secrets: a key that looks like a password or a token, or a
//! connection URL with a password in it, is reported (without its value) and removed before
//! the file is read any further. Credentials come from Vault, never from the repository.

use toml::de::{DeTable, DeValue};

use crate::desired::diagnostic::{Diagnostics, SourceText};

/// Key fragments that mark a value as a secret, which must never be committed.
const SECRET_MARKERS: [&str; 4] = ["password", "passwd", "secret", "token"];

/// Reports and removes every key that looks like a plaintext secret, and every string value
/// (also inside arrays) that embeds a password in a connection URL. Values are never echoed.
/// Returns the dotted paths of the keys removed.
pub(super) fn remove_secrets(
    table: &mut DeTable<'_>,
    prefix: &str,
    src: &SourceText,
    diags: &mut Diagnostics,
) -> Vec<String> {
    const URL_MESSAGE: &str = "this value embeds a password in a connection URL: credentials come from Vault only; remove it from the repository and rotate it";
    let mut doomed = Vec::new();
    let mut removed = Vec::new();
    for (k, v) in table.iter_mut() {
        let key = k.get_ref().to_string();
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let lower = key.to_ascii_lowercase();
        if SECRET_MARKERS.iter().any(|m| lower.contains(m)) {
            diags.error(
                src,
                k.span(),
                path.clone(),
                format!("`{key}` looks like a plaintext secret: credentials come from Vault only (set [credentials] vault_kv or vault_database_role in the region file); remove it from the repository and rotate it"),
            );
            doomed.push(key);
            removed.push(path);
            continue;
        }
        let span = v.span();
        match v.get_mut() {
            DeValue::Table(inner) => removed.extend(remove_secrets(inner, &path, src, diags)),
            DeValue::String(s) if url_has_password(s) => {
                diags.error(src, span, path.clone(), URL_MESSAGE);
                doomed.push(key);
                removed.push(path);
            }
            DeValue::Array(items) => {
                let secret =
                    |v: &DeValue<'_>| matches!(v, DeValue::String(s) if url_has_password(s));
                if items.iter().any(|i| secret(i.get_ref())) {
                    // A plain array of values (never an array of tables): rebuild it without them.
                    let mut kept = toml::de::DeArray::new();
                    for item in items.iter() {
                        if secret(item.get_ref()) {
                            diags.error(src, item.span(), path.clone(), URL_MESSAGE);
                        } else {
                            kept.push(item.clone());
                        }
                    }
                    *items = kept;
                    removed.push(path.clone());
                }
                for item in items.iter_mut() {
                    if let DeValue::Table(inner) = item.get_mut() {
                        removed.extend(remove_secrets(inner, &format!("{path}[]"), src, diags));
                    }
                }
            }
            _ => {}
        }
    }
    for key in doomed {
        table.remove(key.as_str());
    }
    removed
}

/// Whether a string looks like `scheme://user:password@host`.
fn url_has_password(s: &str) -> bool {
    let Some((_, rest)) = s.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.split_once(':').is_some_and(|(_, p)| !p.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_passwords() {
        assert!(url_has_password("postgres://neo:hunter2@db:5432/x"));
        assert!(!url_has_password("postgres://neo@db:5432/x"));
        assert!(!url_has_password("secret/neo/regions/us-east"));
        assert!(!url_has_password("https://vault:8200/v1/x"));
    }
}
