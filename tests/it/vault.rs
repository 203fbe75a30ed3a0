//! Credentials from Vault, against a real OpenBao dev server (`support::bao`) and real
//! PostgreSQL clusters: KV v2 logins with a token, AppRole, and dynamic database credentials.

use crate::support::bao::BaoServer;

/// The harness itself: a dev server starts, answers as root, and stores and reads KV v2.
#[test]
fn bao_dev_server_starts_and_kv_works() {
    let bao = BaoServer::start();
    bao.bao(&[
        "kv",
        "put",
        "secret/neo/smoke",
        "username=neo",
        "password=s3cret",
    ]);
    let read = bao.bao_json(&["kv", "get", "-format=json", "secret/neo/smoke"]);
    assert_eq!(read["data"]["data"]["username"], "neo");
    assert_eq!(read["data"]["data"]["password"], "s3cret");
    let other = BaoServer::start();
    assert_ne!(bao.addr(), other.addr());
    assert!(other.try_bao(&["kv", "get", "secret/neo/smoke"]).is_err());
}
