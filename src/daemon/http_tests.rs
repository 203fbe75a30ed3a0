//! Tests of the HTTP server: started on 127.0.0.1:0 with a clock the test sets, called over a
//! raw TCP connection, `/metrics` parsed with a Prometheus text parser.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::daemon::metrics::MetricsObserver;
use crate::daemon::observer::{Fanout, Loaded, Observer, Reconciled, Trigger};
use crate::daemon::status::StatusObserver;
use crate::daemon::testing::{at, outcome, region_plan};
use crate::reconcile::RegionStatus;

/// A plain HTTP/1.1 exchange: the status code, the headers (lower-cased names) and the body.
async fn call(addr: SocketAddr, method: &str, path: &str, accept: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test]
async fn endpoints_over_http() {
    let now = Arc::new(Mutex::new(at(1_000)));
    let clock: Clock = {
        let now = Arc::clone(&now);
        Arc::new(move || *now.lock().unwrap())
    };
    let status = StatusObserver::new(at(1_000));
    let (metrics, metrics_handle) = MetricsObserver::new(at(1_000), Arc::clone(&clock));
    let state = HttpState {
        status: status.handle(),
        metrics: metrics_handle,
        clock,
        alive_within: Duration::from_secs(60),
    };
    let observer = Fanout(vec![Box::new(status), Box::new(metrics)]);
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, state, async {
        let _ = stopped.await;
    }));

    // Alive since the start, not ready before the first reconcile.
    let (code, _, body) = call(addr, "GET", "/healthz", "*/*").await;
    assert_eq!(code, 200, "{body}");
    let (code, _, _) = call(addr, "GET", "/readyz", "*/*").await;
    assert_eq!(code, 503);

    observer.tick(at(1_010));
    observer.loaded(
        at(1_011),
        &Loaded::Valid {
            sha: "abc1234def".into(),
        },
    );
    let run = outcome(vec![
        (region_plan("eu", 0, 0, true), RegionStatus::Converged),
        (
            region_plan("us", 2, 0, true),
            RegionStatus::ChangesPending(2),
        ),
    ]);
    observer.reconciled(&Reconciled {
        commit: "abc1234def",
        trigger: Trigger::Start,
        finished: at(1_020),
        took: Duration::from_secs(3),
        applying: false,
        windows_closed: &[],
        outcome: Ok(&run),
    });
    let (code, _, _) = call(addr, "GET", "/readyz", "*/*").await;
    assert_eq!(code, 200);

    let (code, head, body) = call(addr, "GET", "/metrics", "text/plain").await;
    assert_eq!(code, 200);
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let runs = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "neo_reconcile_reconcile_runs_total"
                && s.labels.get("region") == Some("us")
                && s.labels.get("outcome") == Some("changes_pending")
        })
        .expect("runs counter for us");
    assert!(matches!(runs.value, prometheus_parse::Value::Counter(v) if v == 1.0));
    let (_, head, body) = call(addr, "GET", "/metrics", "application/openmetrics-text").await;
    assert!(
        head.contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"));

    let (code, head, body) = call(addr, "GET", "/status", "*/*").await;
    assert_eq!(code, 200);
    assert!(head.contains("content-type: application/json"));
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["ready"], true);
    assert_eq!(doc["source"]["last_good_commit"], "abc1234def");
    assert_eq!(doc["regions"]["us"]["pending_changes"], 2);

    // The loop stalls: two minutes without a tick.
    *now.lock().unwrap() = at(1_010) + Duration::from_secs(120);
    let (code, _, body) = call(addr, "GET", "/healthz", "*/*").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("120s ago"), "{body}");

    let (code, head, body) = call(addr, "HEAD", "/status", "*/*").await;
    assert_eq!(code, 200);
    assert!(head.contains("content-length: "), "{head}");
    assert!(body.is_empty(), "HEAD has no body: {body}");
    let (code, _, _) = call(addr, "GET", "/nope", "*/*").await;
    assert_eq!(code, 404);
    let (code, head, _) = call(addr, "POST", "/status", "*/*").await;
    assert_eq!(code, 405);
    assert!(head.contains("allow: get, head"));

    observer.stopping();
    let (code, _, _) = call(addr, "GET", "/readyz", "*/*").await;
    assert_eq!(code, 503);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops")
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "still listening");
}

#[test]
fn clock_type_accepts_the_system_clock() {
    let clock = crate::daemon::status::system_clock();
    assert!(clock() > SystemTime::UNIX_EPOCH);
}
