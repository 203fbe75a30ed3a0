//! Database credentials, behind the [`Credentials`] trait.
//!
//! A region's `[credentials]` names where its login comes from; [`Sources`] dispatches on
//! that. The development source `env = "PREFIX"` reads `PREFIX_USER` and `PREFIX_PASSWORD`.
//! The Vault sources (`vault_kv`, `vault_database_role`) are reported as unavailable by this
//! build rather than guessed at. Secrets are held in [`Secret`], whose `Debug` and `Display`
//! never show the value, so they cannot reach a log line, a plan or an error by accident.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::desired::{CredentialSource, Region};

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
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CredentialError {
    #[error("environment variable {0} is not set (the region's credentials are env = \"{1}\")")]
    MissingEnv(String, String),
    #[error("credential source {0} is not available in this build of neo-reconcile; use env = \"PREFIX\" for now")]
    Unsupported(&'static str),
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Fetches the login of a region's database.
pub trait Credentials: Send + Sync {
    fn fetch<'a>(
        &'a self,
        region: &'a Region,
    ) -> BoxFuture<'a, Result<DbCredentials, CredentialError>>;
}

/// The credential sources of this build, chosen per region by its `[credentials]` table.
#[derive(Debug, Default, Clone)]
pub struct Sources;

impl Credentials for Sources {
    fn fetch<'a>(
        &'a self,
        region: &'a Region,
    ) -> BoxFuture<'a, Result<DbCredentials, CredentialError>> {
        Box::pin(async move {
            match &region.credentials {
                CredentialSource::Env(prefix) => from_env(prefix, |k| std::env::var(k).ok()),
                CredentialSource::VaultKv(_) => Err(CredentialError::Unsupported("vault_kv")),
                CredentialSource::VaultDatabaseRole(_) => {
                    Err(CredentialError::Unsupported("vault_database_role"))
                }
            }
        })
    }
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
