//! Database credentials, behind the [`Credentials`] trait.
//!
//! A region's `[credentials]` names where its login comes from; [`Sources`] dispatches on
//! that. The development source `env = "PREFIX"` reads `PREFIX_USER` and `PREFIX_PASSWORD`;
//! the Vault sources (`vault_kv`, `vault_database_role`) go to the process's [`Vault`]
//! client, when one is configured. Secrets are held in [`Secret`], whose `Debug` and `Display`
//! never show the value, so they cannot reach a log line, a plan or an error by accident.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::db::Lease;
use crate::desired::{CredentialSource, Region};
use crate::sources::vault::{Vault, VaultError};

/// A secret value. Formatting it shows `***`; only [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for handing to a database driver. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A database login.
#[derive(Debug, Clone)]
pub struct DbCredentials {
    pub username: String,
    pub password: Secret,
    /// The lease of dynamic credentials, which must be renewed or replaced before it ends.
    pub lease: Option<Lease>,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CredentialError {
    #[error("environment variable {0} is not set (the region's credentials are env = \"{1}\")")]
    MissingEnv(String, String),
    #[error("region {region}: Vault {path}: {reason}")]
    Vault {
        region: String,
        path: String,
        reason: String,
    },
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Fetches the login of a region's database.
pub trait Credentials: Send + Sync {
    fn fetch<'a>(
        &'a self,
        region: &'a Region,
    ) -> BoxFuture<'a, Result<DbCredentials, CredentialError>>;
}

/// The credential sources of this process, chosen per region by its `[credentials]` table:
/// the environment, and Vault when it is configured (or why it could not be used).
#[derive(Debug, Default, Clone)]
pub struct Sources {
    vault: Option<Result<Arc<Vault>, VaultError>>,
}

impl Sources {
    /// Sources with a Vault client, or the reason there is none although one was configured.
    pub fn with_vault(vault: Result<Arc<Vault>, VaultError>) -> Sources {
        Sources { vault: Some(vault) }
    }

    /// The Vault client, if one is configured and logged in.
    pub fn vault(&self) -> Option<&Arc<Vault>> {
        self.vault.as_ref().and_then(|v| v.as_ref().ok())
    }
}

impl Credentials for Sources {
    fn fetch<'a>(
        &'a self,
        region: &'a Region,
    ) -> BoxFuture<'a, Result<DbCredentials, CredentialError>> {
        Box::pin(async move {
            let source = &region.credentials.source;
            if let CredentialSource::Env(prefix) = source {
                return from_env(prefix, |k| std::env::var(k).ok());
            }
            let fail = |reason: String| CredentialError::Vault {
                region: region.name.clone(),
                path: source.vault_path().unwrap_or_default().to_string(),
                reason,
            };
            match &self.vault {
                Some(Ok(vault)) => vault.fetch(region).await,
                Some(Err(e)) => Err(fail(e.to_string())),
                None => Err(fail(NOT_CONFIGURED.to_string())),
            }
        })
    }
}

/// Why a Vault source cannot be read when no Vault is configured.
pub const NOT_CONFIGURED: &str =
    "Vault is not configured: set VAULT_ADDR and a way to log in (VAULT_TOKEN, --vault-token-file, or AppRole's VAULT_ROLE_ID_FILE and VAULT_SECRET_ID_FILE)";

/// The regions (name and Vault path) whose credentials come from Vault.
pub fn vault_regions<'a>(regions: &[&'a Region]) -> Vec<(&'a str, &'a str)> {
    regions
        .iter()
        .filter_map(|r| {
            r.credentials
                .source
                .vault_path()
                .map(|p| (r.name.as_str(), p))
        })
        .collect()
}

/// Reads `PREFIX_USER` and `PREFIX_PASSWORD` through `get`.
pub fn from_env(
    prefix: &str,
    get: impl Fn(&str) -> Option<String>,
) -> Result<DbCredentials, CredentialError> {
    let var = |suffix: &str| {
        let name = format!("{prefix}_{suffix}");
        get(&name).ok_or_else(|| CredentialError::MissingEnv(name, prefix.to_string()))
    };
    Ok(DbCredentials {
        username: var("USER")?,
        password: Secret::new(var("PASSWORD")?),
        lease: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_format() {
        let c = DbCredentials {
            username: "neo".into(),
            password: Secret::new("hunter2"),
            lease: None,
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.password.to_string(), "***");
        assert_eq!(c.password.expose(), "hunter2");
    }

    #[test]
    fn env_source_reads_user_and_password() {
        let get = |k: &str| match k {
            "NEO_X_USER" => Some("neo".to_string()),
            "NEO_X_PASSWORD" => Some("pw".to_string()),
            _ => None,
        };
        let c = from_env("NEO_X", get).unwrap();
        assert_eq!((c.username.as_str(), c.password.expose()), ("neo", "pw"));
        let err = from_env("NEO_Y", get).unwrap_err();
        assert_eq!(err.to_string(), "environment variable NEO_Y_USER is not set (the region's credentials are env = \"NEO_Y\")");
    }
}
