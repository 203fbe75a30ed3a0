//! What went wrong with a Vault request, and whether trying again can help.
//!
//! [`describe`] turns vaultrs' errors into words without any value (Vault's answers are
//! reduced to a status and its error strings, which never echo a secret); [`is_transient`]
//! says whether an error is worth another attempt (Vault unreachable, 5xx, 429), and
//! [`retrying`] makes those few attempts, with a growing pause, inside one run. A 4xx is never
//! retried: asking again gets the same answer.

use std::future::Future;
use std::time::Duration;

use vaultrs::error::ClientError;

/// How many times one request is sent at most when its errors are transient.
pub const ATTEMPTS: u32 = 4;

/// The pause after the first transient error; it doubles after each further one.
pub const FIRST_PAUSE: Duration = Duration::from_millis(250);

/// A failed Vault request: what went wrong, in words, and whether it is worth trying later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Fault {
    pub message: String,
    pub transient: bool,
}

impl Fault {
    pub fn from_client(e: &ClientError) -> Fault {
        Fault {
            message: describe(e),
            transient: is_transient(e),
        }
    }

    /// A failure no retry can mend.
    pub fn permanent(message: impl Into<String>) -> Fault {
        Fault {
            message: message.into(),
            transient: false,
        }
    }
}

/// Whether `e` may go away by itself: Vault unreachable or not answering, a 5xx (sealed is
/// 503), or 429 (rate limited).
pub fn is_transient(e: &ClientError) -> bool {
    match e {
        ClientError::APIError { code, .. } => *code == 429 || *code >= 500,
        ClientError::RestClientError { source } => matches!(
            source,
            rustify::errors::ClientError::RequestError { .. }
                | rustify::errors::ClientError::ResponseError { .. }
        ),
        _ => false,
    }
}

/// Runs `request` up to [`ATTEMPTS`] times while it fails transiently, pausing
/// [`FIRST_PAUSE`], then twice as long each time.
pub async fn retrying<T, Fut>(
    what: &str,
    mut request: impl FnMut() -> Fut,
) -> Result<T, ClientError>
where
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut pause = FIRST_PAUSE;
    let mut attempt = 1;
    loop {
        match request().await {
            Err(e) if attempt < ATTEMPTS && is_transient(&e) => {
                tracing::warn!(request = %what, attempt, error = %describe(&e), "Vault request failed; trying again.");
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// What went wrong with a Vault request, in words, without any value.
pub fn describe(e: &ClientError) -> String {
    match e {
        ClientError::APIError { code: 503, .. } => {
            "Vault is sealed or unavailable (503)".to_string()
        }
        ClientError::APIError { code: 403, .. } => {
            "permission denied (403): check the token's policies".to_string()
        }
        ClientError::APIError { code: 404, .. } => "not found (404)".to_string(),
        ClientError::APIError { code: 429, .. } => {
            "Vault is rate limiting requests (429)".to_string()
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> ClientError {
        ClientError::APIError {
            code,
            errors: vec![],
        }
    }

    #[test]
    fn only_unavailability_and_rate_limits_are_transient() {
        let kinds: Vec<(u16, bool)> = [400, 403, 404, 429, 500, 502, 503]
            .into_iter()
            .map(|c| (c, is_transient(&api(c))))
            .collect();
        assert_eq!(
            kinds,
            [
                (400, false),
                (403, false),
                (404, false),
                (429, true),
                (500, true),
                (502, true),
                (503, true)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_a_few_times_and_4xx_not_at_all() {
        let calls = std::cell::Cell::new(0);
        let r: Result<(), _> = retrying("test", || {
            calls.set(calls.get() + 1);
            async { Err(api(503)) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.get(), ATTEMPTS);
        calls.set(0);
        let r: Result<(), _> = retrying("test", || {
            calls.set(calls.get() + 1);
            async { Err(api(403)) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.get(), 1);
        calls.set(0);
        let r = retrying("test", || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 3 {
                    Err(api(429))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(r.unwrap(), 3);
    }
}
