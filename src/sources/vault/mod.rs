//! Database logins from Vault (or OpenBao, same API), through the `vaultrs` crate.
//!
//! [`Vault::connect`] logs in once per process (a token, or AppRole with role ID and secret
//! ID files) and checks the token with `lookup-self`. [`Vault::fetch`] then reads a region's
//! login: a KV v2 secret (`vault_kv = "<mount>/<path>"`, the mount being the first path
//! segment) or dynamic credentials from the database secrets engine
//! (`vault_database_role = "<mount>/creds/<role>"`), whose lease is remembered so that
//! [`Vault::revoke_leases`] can revoke every lease of the run when it ends. Keeping the token
//! and the leases alive in between (renew, replace, log in again) is the job of
//! [`keeper::LeaseKeeper`], on the timing of [`lifetime::next`].
//!
//! Every error names the region and the Vault path, and never a value: Vault's answers are
//! reduced to a status and its error strings ([`faults`]), which never echo a secret.
//! Transient errors (unreachable, 5xx, 429) are tried again a few times; 4xx are not.

pub mod config;
mod endpoints;
pub mod faults;
pub mod keeper;
pub mod lifetime;

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::RwLock;
use vaultrs::client::{Client, VaultClient, VaultClientSettingsBuilder};

use self::config::{VaultAuth, VaultConfig};
use self::endpoints::{DatabaseCredsRequest, RenewLeaseRequest, RevokeLeaseRequest};
use self::faults::{describe, retrying, Fault};
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

/// The client token's lifetime as Vault reported it (lookup-self, renew-self, login).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenGrant {
    /// Its time to live; zero for a token that never expires (such as a root token).
    pub ttl: Duration,
    pub renewable: bool,
}

/// A logged-in Vault client, and the leases it issued in this process.
pub struct Vault {
    /// The client and its token; the lease keeper swaps the token when it logs in again.
    client: RwLock<VaultClient>,
    config: VaultConfig,
    /// The token's lifetime when it was last looked up or renewed.
    token: Mutex<TokenGrant>,
    /// Every lease of a dynamic login fetched so far, with its region, until revoked.
    leases: Mutex<Vec<(String, Lease)>>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("address", &self.config.address)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Builds the client, logs in, and checks the token (`lookup-self`).
    pub async fn connect(config: &VaultConfig) -> Result<Vault, VaultError> {
        // reqwest is built without a default TLS provider; sqlx uses ring, so Vault does too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client_error = |message: String| VaultError::Client {
            address: config.address.clone(),
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
            address: config.address.clone(),
            reason,
        };
        let token = login(&client, &config.address, &config.auth).await?;
        client.set_token(token.expose());
        let grant = lookup_self(&client)
            .await
            .map_err(|f| login_error(format!("token lookup-self: {f}")))?;
        tracing::info!(address = %config.address, ttl_secs = grant.ttl.as_secs(), renewable = grant.renewable, "Logged in to Vault.");
        Ok(Vault {
            client: RwLock::new(client),
            config: config.clone(),
            token: Mutex::new(grant),
            leases: Mutex::new(Vec::new()),
        })
    }

    /// The address of the Vault server.
    pub fn address(&self) -> &str {
        &self.config.address
    }

    /// The client token's lifetime, as last looked up or renewed.
    pub fn token_grant(&self) -> TokenGrant {
        *self.token.lock().expect("never poisoned")
    }

    /// Whether a refused or exhausted token can be replaced by logging in again (AppRole).
    pub fn can_log_in_again(&self) -> bool {
        matches!(self.config.auth, VaultAuth::AppRole { .. })
    }

    /// Renews the client token (`renew-self`), asking for `increment`.
    pub async fn renew_token(&self, increment: Duration) -> Result<TokenGrant, Fault> {
        let client = self.client.read().await;
        let inc = format!("{}s", increment.as_secs());
        let auth = vaultrs::token::renew_self(&*client, Some(&inc))
            .await
            .map_err(|e| Fault::from_client(&e))?;
        let grant = TokenGrant {
            ttl: Duration::from_secs(auth.lease_duration),
            renewable: auth.renewable,
        };
        *self.token.lock().expect("never poisoned") = grant;
        Ok(grant)
    }

    /// Logs in again (AppRole) and swaps the new token into the client. With a plain token
    /// there is no way to get another one: a clear, permanent error.
    pub async fn log_in_again(&self) -> Result<TokenGrant, Fault> {
        if !self.can_log_in_again() {
            return Err(Fault::permanent(
                "the Vault token reached the end of its life (its max TTL, or renewal was refused) and neo-reconcile was given a token, not AppRole, so it cannot log in again: use AppRole, or a periodic token that can be renewed for as long as the process lives",
            ));
        }
        // The old token may be dead already: log in without it (an empty token sends no
        // header). Requests wait for the new token meanwhile.
        let mut client = self.client.write().await;
        let old = Secret::new(std::mem::take(&mut client.settings.token));
        client.set_token("");
        let token = match login(&client, &self.config.address, &self.config.auth).await {
            Ok(token) => token,
            Err(e) => {
                // Keep the old token while it lasts; the keeper tries again later.
                client.set_token(old.expose());
                return Err(Fault {
                    message: e.to_string(),
                    transient: true,
                });
            }
        };
        client.set_token(token.expose());
        let grant = lookup_self(&client).await?;
        *self.token.lock().expect("never poisoned") = grant;
        tracing::info!(ttl_secs = grant.ttl.as_secs(), "Logged in to Vault again.");
        Ok(grant)
    }

    /// The leases issued so far and not yet revoked, with their regions, oldest first.
    pub fn leases(&self) -> Vec<(String, Lease)> {
        self.leases.lock().expect("never poisoned").clone()
    }

    /// Reads the login of a region whose credentials come from Vault. Transient errors
    /// (Vault unreachable, 5xx, 429) are tried again a few times.
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
        let client = self.client.read().await;
        let client = &*client;
        let data: HashMap<String, serde_json::Value> =
            retrying(path, || vaultrs::kv2::read(client, mount, rest))
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
        let client = self.client.read().await;
        let client = &*client;
        let leased = retrying(path, || {
            endpoints::exec_leased(
                client,
                DatabaseCredsRequest {
                    mount: mount.to_string(),
                    role: role.to_string(),
                },
            )
        })
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

    /// Renews a lease, asking for `increment`; the lease as Vault granted it (a shorter
    /// duration than asked means its max TTL is near).
    pub async fn renew_lease(&self, lease: &Lease, increment: Duration) -> Result<Lease, Fault> {
        let client = self.client.read().await;
        let leased = endpoints::exec_leased(
            &*client,
            RenewLeaseRequest {
                lease_id: lease.id.clone(),
                increment: Some(increment.as_secs()),
            },
        )
        .await
        .map_err(|e| Fault::from_client(&e))?;
        Ok(Lease {
            id: lease.id.clone(),
            duration: Duration::from_secs(leased.lease_duration.into()),
            renewable: leased.renewable,
        })
    }

    /// Revokes every lease issued to this process so far, and forgets them. Returns the
    /// regions whose current lease could not be revoked, with why (the lease then ends at its
    /// TTL). A replaced lease that cannot be revoked any more (it already ended) is not
    /// reported.
    pub async fn revoke_leases(&self) -> Vec<(String, String)> {
        let leases = std::mem::take(&mut *self.leases.lock().expect("never poisoned"));
        let client = self.client.read().await;
        let client = &*client;
        let mut failed = Vec::new();
        for (i, (region, lease)) in leases.iter().enumerate() {
            let current = !leases[i + 1..].iter().any(|(r, _)| r == region);
            let result = retrying("sys/leases/revoke", || {
                endpoints::exec_empty(
                    client,
                    RevokeLeaseRequest {
                        lease_id: lease.id.clone(),
                    },
                )
            })
            .await;
            match result {
                Ok(()) => {
                    tracing::info!(region = %region, "Revoked a dynamic login of the region.")
                }
                Err(e) if current => failed.push((region.clone(), describe(&e))),
                Err(e) => {
                    tracing::debug!(region = %region, error = %describe(&e), "Could not revoke a replaced dynamic login; it ends at its TTL.")
                }
            }
        }
        failed
    }
}

/// Logs in with `auth`: the token itself, read from its file, or an AppRole login.
async fn login(
    client: &VaultClient,
    address: &str,
    auth: &VaultAuth,
) -> Result<Secret, VaultError> {
    let login_error = |reason: String| VaultError::Login {
        address: address.to_string(),
        reason,
    };
    match auth {
        VaultAuth::Token(t) => Ok(t.clone()),
        VaultAuth::TokenFile(path) => read_secret_file("the Vault token file", path),
        VaultAuth::AppRole {
            mount,
            role_id_file,
            secret_id_file,
        } => {
            let role_id = read_secret_file("the AppRole role ID file", role_id_file)?;
            let secret_id = read_secret_file("the AppRole secret ID file", secret_id_file)?;
            let auth = retrying("AppRole login", || {
                vaultrs::auth::approle::login(client, mount, role_id.expose(), secret_id.expose())
            })
            .await
            .map_err(|e| login_error(format!("AppRole at auth/{mount}: {}", describe(&e))))?;
            Ok(Secret::new(auth.client_token))
        }
    }
}

/// The client token's lifetime (`lookup-self`).
async fn lookup_self(client: &VaultClient) -> Result<TokenGrant, Fault> {
    let me = retrying("token lookup-self", || vaultrs::token::lookup_self(client))
        .await
        .map_err(|e| Fault::from_client(&e))?;
    Ok(TokenGrant {
        ttl: Duration::from_secs(me.ttl),
        renewable: me.renewable.unwrap_or(false),
    })
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
