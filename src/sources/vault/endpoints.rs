//! The few Vault endpoints vaultrs lacks or strips, written on vaultrs' own client and
//! middleware (token, namespace, `/v1`): dynamic database credentials with their lease
//! envelope (vaultrs' `database::role::creds` returns only `data`), and `sys/leases/renew`
//! and `sys/leases/revoke`.

use rustify::endpoint::Endpoint;
use rustify_derive::Endpoint;
use serde::{Deserialize, Serialize};
use vaultrs::api::EndpointResult;
use vaultrs::client::{Client, VaultClient};
use vaultrs::error::ClientError;

/// `GET <mount>/creds/<role>`: a new dynamic login and its lease.
#[derive(Debug, Endpoint)]
#[endpoint(path = "{self.mount}/creds/{self.role}", response = "DatabaseCreds")]
pub struct DatabaseCredsRequest {
    #[endpoint(skip)]
    pub mount: String,
    #[endpoint(skip)]
    pub role: String,
}

/// The `data` of a database credentials response. Deliberately not `Debug`: it holds the
/// password until it is moved into a `Secret`.
#[derive(Deserialize)]
pub struct DatabaseCreds {
    pub username: String,
    pub password: String,
}

/// `PUT sys/leases/renew`.
#[derive(Debug, Endpoint, Serialize)]
#[endpoint(path = "sys/leases/renew", method = "PUT")]
pub struct RenewLeaseRequest {
    pub lease_id: String,
    /// The requested extension, in seconds; Vault may grant less.
    pub increment: Option<u64>,
}

/// `PUT sys/leases/revoke`.
#[derive(Debug, Endpoint, Serialize)]
#[endpoint(path = "sys/leases/revoke", method = "PUT")]
pub struct RevokeLeaseRequest {
    pub lease_id: String,
}

/// The envelope of a leased answer: the data (if any) and the lease.
pub struct Leased<T> {
    pub data: Option<T>,
    pub lease_id: String,
    pub lease_duration: u32,
    pub renewable: bool,
}

/// Runs `endpoint` and keeps the lease envelope of its answer.
pub async fn exec_leased<E: Endpoint>(
    client: &VaultClient,
    endpoint: E,
) -> Result<Leased<E::Response>, ClientError> {
    let result: EndpointResult<E::Response> = endpoint
        .with_middleware(client.middle())
        .exec(client.http())
        .await
        .map_err(api_error)?
        .wrap::<EndpointResult<_>>()
        .map_err(|source| ClientError::RestClientError { source })?;
    Ok(Leased {
        data: result.data,
        lease_id: result.lease_id,
        lease_duration: result.lease_duration,
        renewable: result.renewable,
    })
}

/// Runs an endpoint whose answer has no body (`204 No Content`).
pub async fn exec_empty<E: Endpoint>(client: &VaultClient, endpoint: E) -> Result<(), ClientError> {
    endpoint
        .with_middleware(client.middle())
        .exec(client.http())
        .await
        .map_err(api_error)
        .map(|_| ())
}

/// Turns an error status with Vault's `{"errors": [...]}` body into `ClientError::APIError`,
/// as vaultrs does for its own endpoints.
fn api_error(e: rustify::errors::ClientError) -> ClientError {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<String>,
    }
    if let rustify::errors::ClientError::ServerResponseError { code, content } = &e {
        let errors = content
            .as_deref()
            .and_then(|c| serde_json::from_str::<Errors>(c).ok())
            .map(|e| e.errors)
            .unwrap_or_default();
        return ClientError::APIError {
            code: *code,
            errors,
        };
    }
    ClientError::RestClientError { source: e }
}
