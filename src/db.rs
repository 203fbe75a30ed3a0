//! PostgreSQL connections. Every connection neo-reconcile opens to a region goes through that
//! region's [`Connector`], which holds the region's current [`Login`].
//!
//! Who owns what, for how long: [`resolve`] fetches each region's login once (one call to the
//! credential source per region per [`Connectors`]) and keeps it behind a
//! `tokio::sync::watch` channel. A CLI run owns its `Connectors` for the run; a long-lived
//! process keeps them and publishes a renewed or replaced login with [`Connectors::replace`],
//! which every later connection of the region (the lock's, the observer's, the workers')
//! picks up without a restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::{Connection, Executor};
use tokio::sync::watch;

use crate::desired::{Endpoint, Region, SslMode};
use crate::sources::credentials::{CredentialError, Credentials, Secret};

/// The `application_name` of every connection neo-reconcile opens.
pub const APPLICATION_NAME: &str = "neo-reconcile";

/// How long to wait for a region's database to accept a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A region's database login: who neo-reconcile connects as. Never logged: the password is a
/// [`Secret`].
#[derive(Debug, Clone)]
pub struct Login {
    pub username: String,
    pub password: Secret,
    /// Set when the login is leased (dynamic credentials): it must be renewed or replaced
    /// before it expires.
    pub lease: Option<Lease>,
    /// The role every session runs as (`set_role`), set at connection start.
    pub set_role: Option<String>,
}

/// The lease of a dynamic login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub id: String,
    pub duration: Duration,
    pub renewable: bool,
}

/// Why a connection could not be opened. Names the endpoint, never the password.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    #[error("credentials: {0}")]
    Credentials(CredentialError),
    #[error("cannot connect to {host}:{port}/{database}: {message}")]
    Refused {
        host: String,
        port: u16,
        database: String,
        message: String,
    },
    /// The server answered and refused the login: bad or expired credentials, not a network
    /// problem.
    #[error("PostgreSQL at {host}:{port}/{database} rejected the login of {username} from {source_of_login} (the credentials are wrong or expired; this is not a network error): {message}")]
    Rejected {
        host: String,
        port: u16,
        database: String,
        username: String,
        /// Where the login came from (`Vault <path>`, `env <PREFIX>`).
        source_of_login: String,
        message: String,
    },
    #[error("connecting to {host}:{port}/{database} timed out after {secs}s")]
    Timeout {
        host: String,
        port: u16,
        database: String,
        secs: u64,
    },
    #[error("cannot prepare the connection to {database}: {message}")]
    Setup { database: String, message: String },
}

/// The connection factory of one region: its endpoint and its current login.
#[derive(Debug, Clone)]
pub struct Connector {
    region: String,
    endpoint: Endpoint,
    /// Where the login comes from, for messages (`Vault <path>`, `env <PREFIX>`).
    source: String,
    login: Result<watch::Receiver<Arc<Login>>, CredentialError>,
}

impl Connector {
    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The login as it is now (a clone of the `Arc`: a replacement does not change it).
    fn login(&self) -> Result<Arc<Login>, ConnectError> {
        match &self.login {
            Ok(rx) => Ok(rx.borrow().clone()),
            Err(e) => Err(ConnectError::Credentials(e.clone())),
        }
    }

    /// A watch on the region's login, telling a holder of a long-lived connection when a new
    /// login was published since it last looked.
    pub fn login_watch(&self) -> LoginWatch {
        LoginWatch(self.login.as_ref().ok().cloned())
    }

    /// Opens one connection to `database` on the region's server, with the current login.
    pub async fn connect(&self, database: &str) -> Result<PgConnection, ConnectError> {
        connect(&self.endpoint, database, &*self.login()?, &self.source).await
    }

    /// Opens a connection to the region's own database.
    pub async fn connect_region(&self) -> Result<PgConnection, ConnectError> {
        self.connect(&self.endpoint.database).await
    }

    /// Opens one of the connections migrations run on (never a pooled one: each worker owns
    /// its connection). If neo-reconcile dies mid-migration, the server aborts the running
    /// statement within seconds instead of finishing it for nobody (PostgreSQL 14 and later).
    pub async fn connect_worker(&self) -> Result<PgConnection, ConnectError> {
        let mut conn = self.connect_region().await?;
        conn.execute(
            "SELECT set_config('client_connection_check_interval', '2s', false)
             WHERE current_setting('server_version_num')::int >= 140000",
        )
        .await
        .map_err(|e| ConnectError::Setup {
            database: self.endpoint.database.clone(),
            message: e.to_string(),
        })?;
        Ok(conn)
    }
}

/// Whether a region's login was replaced since a connection was opened: a worker checks it
/// between tenants and opens a new connection when it was, so that connections on an old
/// login (whose lease may end soon) finish what they run and go away.
#[derive(Debug)]
pub struct LoginWatch(Option<watch::Receiver<Arc<Login>>>);

impl LoginWatch {
    /// Marks the current login as seen; call it before opening a connection.
    pub fn seen(&mut self) {
        if let Some(rx) = &mut self.0 {
            rx.borrow_and_update();
        }
    }

    /// Whether a new login was published since the last [`LoginWatch::seen`].
    pub fn changed(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|rx| rx.has_changed().unwrap_or(false))
    }
}

/// The connectors of the regions of one run (or one long-lived process), and the senders that
/// replace their logins.
#[derive(Debug, Default)]
pub struct Connectors {
    by_region: BTreeMap<String, Connector>,
    senders: BTreeMap<String, watch::Sender<Arc<Login>>>,
}

impl Connectors {
    /// The connector of a region; a region that was not resolved has none.
    pub fn get(&self, region: &str) -> Option<&Connector> {
        self.by_region.get(region)
    }

    /// Publishes a new login for a region (renewed or replaced credentials); connections
    /// opened from now on use it.
    pub fn replace(&self, region: &str, login: Login) -> bool {
        self.senders
            .get(region)
            .is_some_and(|tx| tx.send(Arc::new(login)).is_ok())
    }
}

/// Fetches the login of each region once, concurrently. A region whose credentials cannot be
/// fetched still gets a connector, which reports that error on every connection.
pub async fn resolve(regions: &[&Region], credentials: &dyn Credentials) -> Connectors {
    let fetched = futures_util::future::join_all(
        regions
            .iter()
            .map(|region| async move { (region, credentials.fetch(region).await) }),
    )
    .await;
    let mut out = Connectors::default();
    for (region, result) in fetched {
        let login = result.map(|c| {
            let (tx, rx) = watch::channel(Arc::new(Login {
                username: c.username,
                password: c.password,
                lease: c.lease,
                set_role: region.credentials.set_role.clone(),
            }));
            out.senders.insert(region.name.clone(), tx);
            rx
        });
        out.by_region.insert(
            region.name.clone(),
            Connector {
                region: region.name.clone(),
                endpoint: region.postgres.clone(),
                source: region.credentials.source.describe(),
                login,
            },
        );
    }
    out
}

/// Connection options for a region's endpoint. The password goes into the driver only; these
/// options are never logged.
///
/// Every session runs with `standard_conforming_strings = on`, set at connection start so it
/// wins over a database's or role's `off`: a second wall behind bound parameters, so that a
/// backslash can never end a string literal early.
///
/// With `set_role`, the session's `role` is set at connection start too (as `SET ROLE`
/// would), so that `RESET ROLE` returns to it and not to the (possibly short-lived) login.
fn connect_options(endpoint: &Endpoint, database: &str, login: &Login) -> PgConnectOptions {
    let options = PgConnectOptions::new()
        .host(&endpoint.host)
        .port(endpoint.port)
        .database(database)
        .username(&login.username)
        .password(login.password.expose())
        .ssl_mode(match endpoint.sslmode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require => PgSslMode::Require,
            SslMode::VerifyCa => PgSslMode::VerifyCa,
            SslMode::VerifyFull => PgSslMode::VerifyFull,
        })
        .application_name(APPLICATION_NAME)
        .options([("standard_conforming_strings", "on")]);
    match &login.set_role {
        Some(role) => options.options([("role", role.as_str())]),
        None => options,
    }
}

/// Opens one connection, with a timeout, naming the endpoint (never the password) on error.
///
/// A server that answers but is full ("too many connections", also a role's or database's
/// `CONNECTION LIMIT`) or still starting up is asked again, with a growing pause, until
/// [`CONNECT_TIMEOUT`]: apply closes and opens connections as it goes, and a closed session's
/// server process can still count against the limit for a moment. Any other failure, such as a
/// refused connection or bad credentials, is reported at once.
async fn connect(
    endpoint: &Endpoint,
    database: &str,
    login: &Login,
    source: &str,
) -> Result<PgConnection, ConnectError> {
    let options = connect_options(endpoint, database, login);
    let mut last_transient: Option<String> = None;
    let attempts = async {
        let mut pause = Duration::from_millis(50);
        loop {
            match PgConnection::connect_with(&options).await {
                Err(e) if is_transient_connect_error(&e) => {
                    tracing::debug!(host = %endpoint.host, port = endpoint.port, database = %database, error = %e, "Server not accepting connections for now; asking again.");
                    last_transient = Some(e.to_string());
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    };
    let connect_error = |message: String| ConnectError::Refused {
        host: endpoint.host.clone(),
        port: endpoint.port,
        database: database.to_string(),
        message,
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempts).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) if is_rejected_login(&e) => Err(ConnectError::Rejected {
            host: endpoint.host.clone(),
            port: endpoint.port,
            database: database.to_string(),
            username: login.username.clone(),
            source_of_login: source.to_string(),
            message: e.to_string(),
        }),
        Ok(Err(e)) => Err(connect_error(e.to_string())),
        Err(_) => match last_transient {
            Some(message) => Err(connect_error(format!(
                "{message} (asked again for {}s)",
                CONNECT_TIMEOUT.as_secs()
            ))),
            None => Err(ConnectError::Timeout {
                host: endpoint.host.clone(),
                port: endpoint.port,
                database: database.to_string(),
                secs: CONNECT_TIMEOUT.as_secs(),
            }),
        },
    }
}

/// Whether the server refused the login itself: `invalid_password` (28P01) or
/// `invalid_authorization_specification` (28000, such as a role that does not exist or may
/// not log in).
fn is_rejected_login(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("28P01" | "28000")))
}

/// Whether a failed connection attempt is worth repeating: the server is full
/// (`too_many_connections`, 53300) or not accepting connections yet (`cannot_connect_now`,
/// 57P03, while it starts up or recovers).
fn is_transient_connect_error(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("53300" | "57P03")))
}
