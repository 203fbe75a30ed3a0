//! A small fault-injecting HTTP proxy for the Vault tests, between neo-reconcile and OpenBao
//! (plain HTTP on 127.0.0.1, tokio TCP): it forwards each request on its own upstream
//! connection (`Connection: close` both ways, so every request is one exchange) and can,
//! for the next N requests whose path contains a given text, answer a status of its own
//! (500, 429, 503) or close the connection without answering. It records every exchange:
//! method, path, status and the raw answer, so a leak test can learn the secrets OpenBao
//! handed out.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does to the next requests matching `path`.
#[derive(Debug, Clone)]
struct Rule {
    path: String,
    fault: Fault,
    remaining: usize,
}

/// A fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and a Vault-style error body.
    Status(u16),
    /// Close the connection without answering.
    Cut,
}

/// One request and its answer, as the proxy saw them.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub injected: bool,
    /// The raw answer (headers and body) from OpenBao; empty when injected.
    pub answer: String,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    log: Vec<Exchange>,
}

/// A running proxy; dropping it stops it.
pub struct Proxy {
    port: u16,
    state: Arc<Mutex<State>>,
    _runtime: tokio::runtime::Runtime,
}

impl Proxy {
    /// Starts a proxy in front of `upstream` (`host:port`).
    pub fn start(upstream: &str) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let upstream = upstream.to_string();
        let shared = state.clone();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (state, upstream) = (shared.clone(), upstream.clone());
                tokio::spawn(async move {
                    let _ = serve(client, &upstream, &state).await;
                });
            }
        });
        Proxy {
            port,
            state,
            _runtime: runtime,
        }
    }

    /// `http://127.0.0.1:PORT`, for `VAULT_ADDR`.
    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next `n` requests whose path contains `path` get `fault` instead of OpenBao's
    /// answer.
    pub fn inject(&self, path: &str, fault: Fault, n: usize) {
        self.state.lock().unwrap().rules.push(Rule {
            path: path.to_string(),
            fault,
            remaining: n,
        });
    }

    /// Every exchange so far.
    pub fn log(&self) -> Vec<Exchange> {
        self.state.lock().unwrap().log.clone()
    }

    /// The values of `"password"` and `"client_token"` fields in OpenBao's answers: the
    /// secrets it handed out through the proxy.
    pub fn handed_out_secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in self.log() {
            for key in ["\"password\":\"", "\"client_token\":\""] {
                let mut rest = e.answer.as_str();
                while let Some(i) = rest.find(key) {
                    rest = &rest[i + key.len()..];
                    if let Some(end) = rest.find('"') {
                        out.push(rest[..end].to_string());
                    }
                }
            }
        }
        out
    }
}

/// Serves one client connection: one request, one answer.
async fn serve(mut client: TcpStream, upstream: &str, state: &Mutex<State>) -> std::io::Result<()> {
    let request = read_request(&mut client).await?;
    let head = String::from_utf8_lossy(&request[..request.len().min(2048)]).into_owned();
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or_default().to_string();
    let path = words.next().unwrap_or_default().to_string();
    let fault = {
        let mut s = state.lock().unwrap();
        let rule = s
            .rules
            .iter_mut()
            .find(|r| r.remaining > 0 && path.contains(&r.path));
        rule.map(|r| {
            r.remaining -= 1;
            r.fault
        })
    };
    let record = |status: u16, injected: bool, answer: String| {
        state.lock().unwrap().log.push(Exchange {
            method: method.clone(),
            path: path.clone(),
            status,
            injected,
            answer,
        });
    };
    match fault {
        Some(Fault::Cut) => {
            record(0, true, String::new());
            return Ok(());
        }
        Some(Fault::Status(code)) => {
            record(code, true, String::new());
            let body = format!("{{\"errors\":[\"injected by the test proxy: {code}\"]}}");
            let answer = format!(
                "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            client.write_all(answer.as_bytes()).await?;
            return client.shutdown().await;
        }
        None => {}
    }
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(&with_connection_close(&request)).await?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    record(status, false, text);
    client.write_all(&answer).await?;
    client.shutdown().await
}

/// Reads one HTTP request: its head and a `Content-Length` body.
async fn read_request(client: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return Ok(buf);
            }
        }
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The request with `Connection: close` in place of any `Connection` header.
fn with_connection_close(request: &[u8]) -> Vec<u8> {
    let end = find(request, b"\r\n\r\n").unwrap_or(request.len());
    let head = String::from_utf8_lossy(&request[..end]);
    let mut out: String = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect::<Vec<_>>()
        .join("\r\n");
    out.push_str("\r\nConnection: close");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&request[end..]);
    bytes
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
