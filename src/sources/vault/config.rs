//! Where Vault is and how neo-reconcile authenticates to it.
//!
//! [`RawVault`] is the `[vault]` table of a configuration file (the daemon's, later), read by
//! serde with `deny_unknown_fields`; [`VaultConfig`] is the validated form every entry point
//! builds, the CLI from `VAULT_*` variables and flags. Neither holds a secret read from a
//! file: token, role ID and secret ID files are read when logging in. A token given in the
//! environment (`VAULT_TOKEN`) is held as a [`Secret`].

use std::path::PathBuf;

use serde::Deserialize;

use crate::sources::credentials::Secret;

/// The AppRole mount used when none is given.
pub const DEFAULT_APPROLE_MOUNT: &str = "approle";

/// `[vault]` as written in a configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVault {
    /// Vault's address, such as `https://vault.internal:8200`.
    pub address: Option<String>,
    /// A PEM file with the CA certificate(s) Vault's TLS certificate is checked against.
    pub ca_cert: Option<PathBuf>,
    /// The Vault Enterprise (or OpenBao) namespace.
    pub namespace: Option<String>,
    /// A file holding a Vault token.
    pub token_file: Option<PathBuf>,
    /// AppRole login.
    pub approle: Option<RawAppRole>,
}

/// `[vault.approle]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAppRole {
    pub role_id_file: PathBuf,
    pub secret_id_file: PathBuf,
    pub mount: Option<String>,
}

/// A validated Vault configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultConfig {
    pub address: String,
    pub ca_cert: Option<PathBuf>,
    pub namespace: Option<String>,
    pub auth: VaultAuth,
}

/// How neo-reconcile logs in to Vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultAuth {
    /// A token given as such (`VAULT_TOKEN`).
    Token(Secret),
    /// A token read from a file.
    TokenFile(PathBuf),
    /// AppRole: the role ID and secret ID are read from files at login.
    AppRole {
        mount: String,
        role_id_file: PathBuf,
        secret_id_file: PathBuf,
    },
}

/// Why a Vault configuration is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("Vault's address is not set: set VAULT_ADDR (or [vault] address)")]
    NoAddress,
    #[error("Vault's address {0:?} is not an http:// or https:// URL")]
    BadAddress(String),
    #[error("no way to log in to Vault: set VAULT_TOKEN, a token file (--vault-token-file), or AppRole's role ID and secret ID files (VAULT_ROLE_ID_FILE and VAULT_SECRET_ID_FILE)")]
    NoAuth,
    #[error("AppRole needs both a role ID file and a secret ID file (VAULT_ROLE_ID_FILE and VAULT_SECRET_ID_FILE)")]
    HalfAppRole,
    #[error("the AppRole mount {0:?} is not a valid Vault mount path")]
    BadMount(String),
}

impl VaultConfig {
    /// Validates `raw`; `token` is a token given in the environment, used when no file-based
    /// method is configured. A token file wins over AppRole, and either over `token`.
    pub fn from_raw(raw: RawVault, token: Option<Secret>) -> Result<VaultConfig, ConfigError> {
        let address = raw
            .address
            .filter(|a| !a.is_empty())
            .ok_or(ConfigError::NoAddress)?;
        if !(address.starts_with("http://") || address.starts_with("https://")) {
            return Err(ConfigError::BadAddress(address));
        }
        let auth = if let Some(file) = raw.token_file {
            VaultAuth::TokenFile(file)
        } else if let Some(a) = raw.approle {
            let mount = a.mount.unwrap_or_else(|| DEFAULT_APPROLE_MOUNT.to_string());
            if mount.is_empty() || mount.starts_with('/') || mount.contains(char::is_whitespace) {
                return Err(ConfigError::BadMount(mount));
            }
            VaultAuth::AppRole {
                mount,
                role_id_file: a.role_id_file,
                secret_id_file: a.secret_id_file,
            }
        } else if let Some(token) = token.filter(|t| !t.expose().is_empty()) {
            VaultAuth::Token(token)
        } else {
            return Err(ConfigError::NoAuth);
        };
        Ok(VaultConfig {
            address: address.trim_end_matches('/').to_string(),
            ca_cert: raw.ca_cert,
            namespace: raw.namespace.filter(|n| !n.is_empty()),
            auth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Result<RawVault, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn the_vault_table_is_strict_and_validated() {
        let err = raw("address = \"http://x\"\ntoken = \"s.abc\"").unwrap_err();
        assert!(err.to_string().contains("unknown field `token`"), "{err}");
        let c = VaultConfig::from_raw(
            raw("address = \"https://vault:8200/\"\n[approle]\nrole_id_file = \"/r\"\nsecret_id_file = \"/s\"").unwrap(),
            None,
        )
        .unwrap();
        assert_eq!(c.address, "https://vault:8200");
        assert_eq!(
            c.auth,
            VaultAuth::AppRole {
                mount: "approle".into(),
                role_id_file: "/r".into(),
                secret_id_file: "/s".into()
            }
        );
        let token = || Some(Secret::new("s.hunter2"));
        let c = VaultConfig::from_raw(raw("address = \"http://v\"").unwrap(), token()).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(
            VaultConfig::from_raw(raw("").unwrap(), token()),
            Err(ConfigError::NoAddress)
        );
        assert_eq!(
            VaultConfig::from_raw(raw("address = \"vault:8200\"").unwrap(), token()),
            Err(ConfigError::BadAddress("vault:8200".into()))
        );
        assert_eq!(
            VaultConfig::from_raw(raw("address = \"http://v\"").unwrap(), None),
            Err(ConfigError::NoAuth)
        );
    }
}
