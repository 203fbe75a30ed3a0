//! Database logins from Vault (or OpenBao, same API), through the `vaultrs` crate.
//!
//! [`Vault::connect`] logs in once per process (a token, or AppRole with role ID and secret
//! ID files) and checks the token with `lookup-self`. [`Vault::fetch`] then reads a region's
//! login: a KV v2 secret (`vault_kv = "<mount>/<path>"`, the mount being the first path
//! segment) or dynamic credentials from the database secrets engine
//! (`vault_database_role = "<mount>/creds/<role>"`), whose lease is remembered so that
//! [`Vault::revoke_leases`] can revoke every lease of the run when it ends.
//!
//! Every error names the region and the Vault path, and never a value: Vault's answers are
//! reduced to a status and its error strings, which never echo a secret.

pub mod config;
mod endpoints;

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use vaultrs::client::{Client, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use self::config::{VaultAuth, VaultConfig};
use self::endpoints::{DatabaseCredsRequest, RenewLeaseRequest, RevokeLeaseRequest};
use crate::db::Lease;
use crate::desired::{CredentialSource, Region};
use crate::sources::credentials::{CredentialError, DbCredentials, Secret};

/// How long one request to Vault may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Why Vault could not be used at all (before any region's secret is read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("cannot set up the Vault client for {address}: {message}")]
    Client { address: String, message: String },
    #[error("cannot read {what} {path}: {message}")]
    File {
        what: &'static str,
        path: String,
        message: String,
    },
    #[error("Vault login at {address} failed: {reason}")]
    Login { address: String, reason: String },
}

/// A logged-in Vault client, and the leases it issued in this process.
pub struct Vault {
    client: VaultClient,
    address: String,
    /// The leases of the dynamic logins fetched so far, with their region.
    leases: Mutex<Vec<(String, Lease)>>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Builds the client, logs in, and checks the token (`lookup-self`).
    pub async fn connect(config: &VaultConfig) -> Result<Vault, VaultError> {
        // reqwest is built without a default TLS provider; sqlx uses ring, so Vault does too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let address = config.address.clone();
        let client_error = |message: String| VaultError::Client {
            address: address.clone(),
            message,
        };
        let mut settings = VaultClientSettingsBuilder::default();
        settings
            .address(&config.address)
            .token(String::new())
            .timeout(Some(REQUEST_TIMEOUT))
            .verify(true)
            .identity(None)
            .ca_certs(
                config
                    .ca_cert
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
            );
        if let Some(ns) = &config.namespace {
            settings.set_namespace(ns.clone());
        }
        let settings = settings.build().map_err(|e| client_error(e.to_string()))?;
        let mut client = VaultClient::new(settings).map_err(|e| client_error(e.to_string()))?;
        let login_error = |reason: String| VaultError::Login {
            address: address.clone(),
            reason,
        };
        let token = match &config.auth {
            VaultAuth::Token(t) => t.clone(),
            VaultAuth::TokenFile(path) => read_secret_file("the Vault token file", path)?,
            VaultAuth::AppRole {
                mount,
                role_id_file,
                secret_id_file,
            } => {
                let role_id = read_secret_file("the AppRole role ID file", role_id_file)?;
                let secret_id = read_secret_file("the AppRole secret ID file", secret_id_file)?;
                let auth = vaultrs::auth::approle::login(
                    &client,
                    mount,
                    role_id.expose(),
                    secret_id.expose(),
                )
                .await
                .map_err(|e| login_error(format!("AppRole at auth/{mount}: {}", describe(&e))))?;
                Secret::new(auth.client_token)
            }
        };
        client.set_token(token.expose());
        let me = vaultrs::token::lookup_self(&client)
            .await
            .map_err(|e| login_error(format!("token lookup-self: {}", describe(&e))))?;
        tracing::info!(address = %address, ttl_secs = me.ttl, renewable = me.renewable.unwrap_or(false), "Logged in to Vault.");
        Ok(Vault {
            client,
            address,
            leases: Mutex::new(Vec::new()),
        })
    }

    /// The address of the Vault server.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Reads the login of a region whose credentials come from Vault.
    pub async fn fetch(&self, region: &Region) -> Result<DbCredentials, CredentialError> {
        let source = &region.credentials.source;
        let path = source.vault_path().unwrap_or_default();
        let fail = |reason: String| CredentialError::Vault {
            region: region.name.clone(),
            path: path.to_string(),
            reason,
        };
        match source {
            CredentialSource::VaultKv {
                path,
                username_field,
                password_field,
            } => self
                .kv(path, username_field, password_field)
                .await
                .map_err(fail),
            CredentialSource::VaultDatabaseRole(path) => {
                let creds = self.database(path).await.map_err(fail)?;
                if let Some(lease) = &creds.lease {
                    self.leases
                        .lock()
                        .expect("the lease list is never poisoned")
                        .push((region.name.clone(), lease.clone()));
                }
                Ok(creds)
            }
            CredentialSource::Env(_) => Err(fail("not a Vault source".into())),
        }
    }

    /// Reads a KV v2 secret and picks the username and password fields.
    async fn kv(&self, path: &str, user: &str, pass: &str) -> Result<DbCredentials, String> {
        let (mount, rest) = path.split_once('/').unwrap_or((path, ""));
        let data: HashMap<String, serde_json::Value> =
            vaultrs::kv2::read(&self.client, mount, rest)
                .await
                .map_err(|e| describe(&e))?;
        let field = |name: &str| match data.get(name) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(_) => Err(format!(
                "field {name:?} of the secret is not a non-empty string"
            )),
            None => Err(format!("the secret has no field {name:?}")),
        };
        Ok(DbCredentials {
            username: field(user)?,
            password: Secret::new(field(pass)?),
            lease: None,
        })
    }

    /// Asks the database secrets engine for a new login, with its lease.
    async fn database(&self, path: &str) -> Result<DbCredentials, String> {
        let (mount, role) = crate::desired::database_role_parts(path)
            .ok_or_else(|| "not a <mount>/creds/<role> path".to_string())?;
        let request = DatabaseCredsRequest {
            mount: mount.to_string(),
            role: role.to_string(),
        };
        let leased = endpoints::exec_leased(&self.client, request)
            .await
            .map_err(|e| describe(&e))?;
        let creds = leased
            .data
            .ok_or_else(|| "Vault answered without credentials".to_string())?;
        Ok(DbCredentials {
            username: creds.username,
            password: Secret::new(creds.password),
            lease: (!leased.lease_id.is_empty()).then(|| Lease {
                id: leased.lease_id,
                duration: Duration::from_secs(leased.lease_duration.into()),
                renewable: leased.renewable,
            }),
        })
    }

    /// Renews a lease; the duration Vault granted.
    pub async fn renew_lease(&self, lease: &Lease, increment: Duration) -> Result<Lease, String> {
        let leased = endpoints::exec_leased(
            &self.client,
            RenewLeaseRequest {
                lease_id: lease.id.clone(),
                increment: Some(increment.as_secs()),
            },
        )
        .await
        .map_err(|e| describe(&e))?;
        Ok(Lease {
            id: lease.id.clone(),
            duration: Duration::from_secs(leased.lease_duration.into()),
            renewable: leased.renewable,
        })
    }

    /// Revokes every lease issued to this process so far, and forgets them. Returns the
    /// regions whose lease could not be revoked, with why (the lease then ends at its TTL).
    pub async fn revoke_leases(&self) -> Vec<(String, String)> {
        let leases = std::mem::take(&mut *self.leases.lock().expect("never poisoned"));
        let mut failed = Vec::new();
        for (region, lease) in leases {
            let request = RevokeLeaseRequest {
                lease_id: lease.id.clone(),
            };
            match endpoints::exec_empty(&self.client, request).await {
                Ok(()) => tracing::info!(region = %region, "Revoked the region's dynamic login."),
                Err(e) => failed.push((region, describe(&e))),
            }
        }
        failed
    }
}

/// Reads a file holding one secret (a token, a role ID, a secret ID), trimmed.
fn read_secret_file(what: &'static str, path: &std::path::Path) -> Result<Secret, VaultError> {
    let file_error = |message: String| VaultError::File {
        what,
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let value = text.trim();
    if value.is_empty() {
        return Err(file_error("the file is empty".into()));
    }
    Ok(Secret::new(value))
}

/// What went wrong with a Vault request, in words, without any value.
fn describe(e: &ClientError) -> String {
    match e {
        ClientError::APIError { code: 503, .. } => {
            "Vault is sealed or unavailable (503)".to_string()
        }
        ClientError::APIError { code: 403, .. } => {
            "permission denied (403): check the token's policies".to_string()
        }
        ClientError::APIError { code: 404, .. } => "not found (404)".to_string(),
        ClientError::APIError { code, errors } if errors.is_empty() => {
            format!("Vault answered {code}")
        }
        ClientError::APIError { code, errors } => {
            format!("Vault answered {code}: {}", errors.join("; "))
        }
        ClientError::RestClientError { source } => match source {
            rustify::errors::ClientError::RequestError { .. }
            | rustify::errors::ClientError::ResponseError { .. } => {
                format!("Vault is unreachable: {}", chain(source))
            }
            other => format!("unexpected answer from Vault: {other}"),
        },
        ClientError::ResponseEmptyError | ClientError::ResponseDataEmptyError => {
            "Vault answered without data".to_string()
        }
        other => format!("unexpected answer from Vault: {other}"),
    }
}

/// An error and its sources, joined with ": " (transport errors only: they hold no value).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}
