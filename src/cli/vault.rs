//! Vault for the subcommands that connect: where it is and how to log in (`VAULT_*` variables
//! and `--vault-*` flags), the check that every region reading Vault has it configured
//! (before anything connects), the login, keeping the run's leases alive
//! ([`Logins`]), and revoking them when it ends.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use neo_reconcile::db::{self, Connectors};
use neo_reconcile::desired::Region;
use neo_reconcile::sources::credentials::{self, Secret, Sources};
use neo_reconcile::sources::vault::config::{RawAppRole, RawVault, VaultConfig};
use neo_reconcile::sources::vault::keeper::LeaseKeeper;
use neo_reconcile::sources::vault::Vault;

/// Where Vault is and how to log in. A token is only read from `VAULT_TOKEN` or a file, never
/// from the command line.
#[derive(Debug, clap::Args)]
pub struct VaultArgs {
    /// Vault's address.
    #[arg(long, env = "VAULT_ADDR", value_name = "URL")]
    pub vault_addr: Option<String>,
    /// A PEM file with the CA certificate(s) to check Vault's TLS certificate against.
    #[arg(long, env = "VAULT_CACERT", value_name = "FILE")]
    pub vault_cacert: Option<PathBuf>,
    /// The Vault namespace.
    #[arg(long, env = "VAULT_NAMESPACE", value_name = "NAMESPACE")]
    pub vault_namespace: Option<String>,
    /// A file holding the Vault token (instead of VAULT_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub vault_token_file: Option<PathBuf>,
    /// AppRole login: a file holding the role ID.
    #[arg(long, env = "VAULT_ROLE_ID_FILE", value_name = "FILE")]
    pub vault_role_id_file: Option<PathBuf>,
    /// AppRole login: a file holding the secret ID.
    #[arg(long, env = "VAULT_SECRET_ID_FILE", value_name = "FILE")]
    pub vault_secret_id_file: Option<PathBuf>,
    /// AppRole login: the auth method's mount.
    #[arg(long, value_name = "MOUNT", default_value = "approle")]
    pub vault_approle_mount: String,
}

impl VaultArgs {
    /// The validated configuration; `None` when no Vault address is given.
    pub fn config(&self) -> anyhow::Result<Option<VaultConfig>> {
        if self.vault_addr.as_deref().unwrap_or_default().is_empty() {
            return Ok(None);
        }
        let approle = match (&self.vault_role_id_file, &self.vault_secret_id_file) {
            (Some(r), Some(s)) => Some(RawAppRole {
                role_id_file: r.clone(),
                secret_id_file: s.clone(),
                mount: Some(self.vault_approle_mount.clone()),
            }),
            (None, None) => None,
            _ => bail!(
                "{}",
                neo_reconcile::sources::vault::config::ConfigError::HalfAppRole
            ),
        };
        let raw = RawVault {
            address: self.vault_addr.clone(),
            ca_cert: self.vault_cacert.clone(),
            namespace: self.vault_namespace.clone(),
            token_file: self.vault_token_file.clone(),
            approle,
        };
        let token = std::env::var("VAULT_TOKEN").ok().map(Secret::new);
        Ok(Some(VaultConfig::from_raw(raw, token)?))
    }
}

/// The credential sources of a run. When a region reads Vault, Vault must be configured
/// (else an error before anything connects) and is logged in to; a failed login makes those
/// regions fail, with its reason, while the others go on.
async fn sources(args: &VaultArgs, regions: &[&Region]) -> anyhow::Result<Sources> {
    let needing = credentials::vault_regions(regions);
    if needing.is_empty() {
        return Ok(Sources::default());
    }
    let Some(config) = args.config()? else {
        let list = needing
            .iter()
            .map(|(region, path)| format!("{region} ({path})"))
            .collect::<Vec<_>>()
            .join(", ");
        bail!(
            "these regions take their credentials from Vault: {list}; {}",
            credentials::NOT_CONFIGURED
        );
    };
    let vault = Vault::connect(&config).await.map(Arc::new);
    if let Err(e) = &vault {
        eprintln!("error: {e}");
    }
    Ok(Sources::with_vault(vault))
}

/// A run's region logins: the connectors every connection goes through, the credential
/// sources they came from, and the [`LeaseKeeper`] that renews or replaces dynamic logins
/// and the Vault token while the run lasts. [`Logins::finish`] ends it on every path.
pub struct Logins {
    pub connectors: Arc<Connectors>,
    sources: Sources,
    keeper: Option<LeaseKeeper>,
}

impl Logins {
    /// Fetches each region's login once and starts keeping the leases.
    pub async fn open(args: &VaultArgs, regions: &[&Region]) -> anyhow::Result<Logins> {
        let sources = sources(args, regions).await?;
        let connectors = Arc::new(db::resolve(regions, &sources).await);
        let keeper = sources
            .vault()
            .map(|vault| LeaseKeeper::start(vault.clone(), connectors.clone(), regions));
        Ok(Logins {
            connectors,
            sources,
            keeper,
        })
    }

    /// Ends a run's use of Vault: stops the keeper and revokes every lease the run took.
    /// Failures are reported, not fatal (a lease not revoked ends at its TTL).
    pub async fn finish(self) {
        drop(self.connectors);
        let failed = match self.keeper {
            Some(keeper) => keeper.finish().await,
            None => match self.sources.vault() {
                Some(vault) => vault.revoke_leases().await,
                None => Vec::new(),
            },
        };
        for (region, reason) in failed {
            eprintln!("warning: region {region}: cannot revoke its dynamic login's lease in Vault ({reason}); it ends at its TTL");
        }
    }
}
