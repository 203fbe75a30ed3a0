//! The daemon's small HTTP server: `/healthz`, `/readyz`, `/metrics` and `/status`.
//!
//! Built directly on hyper 1 (HTTP/1.1 only) over tokio, with no framework: four read-only
//! endpoints do not need one. It listens on the configured address (default
//! [`DEFAULT_LISTEN`], loopback only), answers `GET` and `HEAD`, and stops gracefully when
//! the shutdown future completes: no new connections, and open ones get a few seconds to
//! finish. What it serves is read from a [`StatusHandle`] and a [`MetricsHandle`]; it never
//! touches the loop.
//!
//! - `/healthz`: 200 when the loop went round within the threshold it was given (the time
//!   since start counts until the first tick), else 503. For a liveness check or a watchdog.
//! - `/readyz`: 200 once the first reconcile finished, 503 before, and while stopping.
//! - `/metrics`: Prometheus text 0.0.4, or OpenMetrics text when the `Accept` header asks for
//!   `application/openmetrics-text`.
//! - `/status`: the [`StatusDoc`](super::status::StatusDoc) as JSON.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::metrics::{MetricsHandle, OPENMETRICS_TEXT, PROMETHEUS_TEXT};
use super::status::{Clock, StatusHandle};

/// Where the server listens unless the configuration says otherwise: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9187";

/// How long open connections may take to finish after shutdown was asked for.
const DRAIN: Duration = Duration::from_secs(5);
/// How long a client may take to send its request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What the endpoints read.
#[derive(Clone)]
pub struct HttpState {
    pub status: StatusHandle,
    pub metrics: MetricsHandle,
    /// Tells the time for `/healthz` and `/status`.
    pub clock: Clock,
    /// `/healthz` fails when the loop has not ticked for longer than this.
    pub alive_within: Duration,
}

impl std::fmt::Debug for HttpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpState")
            .field("alive_within", &self.alive_within)
            .finish_non_exhaustive()
    }
}

/// Binds the listening socket (port 0 picks a free port; see `local_addr`).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, HttpError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })
}

/// Serves the endpoints on `listener` until `shutdown` completes, then drains open
/// connections for up to five seconds.
pub async fn serve(listener: TcpListener, state: HttpState, shutdown: impl Future<Output = ()>) {
    let state = Arc::new(state);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, or a connection reset before accept: wait a
                // little instead of spinning, and go on.
                tracing::warn!(error = %e, "HTTP accept failed.");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = Arc::clone(&state);
        let service = service_fn(move |req: Request<Incoming>| {
            let state = Arc::clone(&state);
            async move { Ok::<_, Infallible>(respond(&state, &req)) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error.");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => {
            tracing::debug!("HTTP connections still open after the drain time; dropped.");
        }
    }
}

/// The response to one request.
fn respond<B>(state: &HttpState, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match req.uri().path() {
        "/healthz" => healthz(state),
        "/readyz" => readyz(state),
        "/metrics" => metrics(state, req),
        "/status" => status(state),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz, /metrics or /status\n".into(),
        ),
    }
}

fn with_type(code: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn text(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    with_type(code, "text/plain; charset=utf-8", body)
}

fn healthz(state: &HttpState) -> Response<Full<Bytes>> {
    let now = (state.clock)();
    let since = state
        .status
        .last_alive()
        .map(|t| now.duration_since(t).unwrap_or_default());
    match since {
        Some(age) if age <= state.alive_within => text(
            StatusCode::OK,
            format!("ok: the loop ticked {}s ago\n", age.as_secs()),
        ),
        Some(age) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "stalled: the loop last ticked {}s ago (threshold {}s)\n",
                age.as_secs(),
                state.alive_within.as_secs()
            ),
        ),
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "stalled: no tick yet\n".into(),
        ),
    }
}

fn readyz(state: &HttpState) -> Response<Full<Bytes>> {
    if state.status.stopping() {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: stopping\n".into(),
        )
    } else if state.status.ready() {
        text(StatusCode::OK, "ready\n".into())
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the first reconcile has not finished\n".into(),
        )
    }
}

fn metrics<B>(state: &HttpState, req: &Request<B>) -> Response<Full<Bytes>> {
    let openmetrics = req
        .headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        with_type(
            StatusCode::OK,
            OPENMETRICS_TEXT,
            state.metrics.openmetrics_text(),
        )
    } else {
        with_type(
            StatusCode::OK,
            PROMETHEUS_TEXT,
            state.metrics.prometheus_text(),
        )
    }
}

fn status(state: &HttpState) -> Response<Full<Bytes>> {
    let doc = state.status.render((state.clock)());
    match serde_json::to_string_pretty(&doc) {
        Ok(mut json) => {
            json.push('\n');
            with_type(StatusCode::OK, "application/json", json)
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render the status: {e}\n"),
        ),
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
