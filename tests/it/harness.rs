//! Tests of the test harness itself: clusters start side by side, are independent, accept
//! only the right password over TCP, and leave no server or directory behind.

use std::net::TcpStream;
use std::panic;
use std::sync::Mutex;

use sqlx::Connection;

use crate::support::pg::PgCluster;

/// Whether nothing accepts TCP connections on `port` of 127.0.0.1.
fn refuses_connections(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err()
}

#[tokio::test]
async fn two_clusters_run_at_once_and_are_reachable_with_sqlx() {
    let clusters = PgCluster::start_many(2);
    assert_eq!(clusters.len(), 2);
    assert_ne!(clusters[0].port(), clusters[1].port());
    assert_ne!(clusters[0].data_dir(), clusters[1].data_dir());
    let a = clusters[0].pool("postgres").await;
    let b = clusters[1].pool("postgres").await;
    for (pool, cluster) in [(&a, &clusters[0]), (&b, &clusters[1])] {
        let port: String = sqlx::query_scalar("SELECT current_setting('port')")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(port, cluster.port().to_string());
        let version: String = sqlx::query_scalar("SELECT current_setting('server_version_num')")
            .fetch_one(pool)
            .await
            .unwrap();
        assert!(
            version.parse::<u32>().unwrap() >= 150_000,
            "server_version_num {version}"
        );
    }
    sqlx::query("CREATE TABLE only_in_a (id int)")
        .execute(&a)
        .await
        .unwrap();
    let exists = "SELECT to_regclass('public.only_in_a') IS NOT NULL";
    assert!(sqlx::query_scalar::<_, bool>(exists)
        .fetch_one(&a)
        .await
        .unwrap());
    assert!(
        !sqlx::query_scalar::<_, bool>(exists)
            .fetch_one(&b)
            .await
            .unwrap(),
        "the clusters share state"
    );
}

#[test]
fn cluster_is_removed_on_drop() {
    let cluster = PgCluster::start();
    let (dir, port) = (cluster.socket_dir().to_path_buf(), cluster.port());
    assert!(cluster.data_dir().join("PG_VERSION").is_file());
    assert!(
        !refuses_connections(port),
        "port {port} refuses connections while the cluster runs"
    );
    drop(cluster);
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(
        refuses_connections(port),
        "port {port} still accepts connections"
    );
}

#[test]
fn cluster_is_stopped_even_when_the_test_panics() {
    let seen = Mutex::new(None);
    let result = panic::catch_unwind(|| {
        let cluster = PgCluster::start();
        *seen.lock().unwrap() = Some((cluster.socket_dir().to_path_buf(), cluster.port()));
        panic!("a failing test");
    });
    assert!(result.is_err());
    let (dir, port) = seen.into_inner().unwrap().expect("the cluster started");
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(
        refuses_connections(port),
        "port {port} still accepts connections"
    );
}

#[tokio::test]
async fn password_authentication_is_enforced_over_tcp() {
    let cluster = PgCluster::start();
    let (user, password) = cluster.superuser();
    assert_eq!(user, "postgres");
    assert!(!password.is_empty());

    let wrong = format!(
        "postgres://{user}:wrong-{password}@127.0.0.1:{}/postgres",
        cluster.port()
    );
    let error = sqlx::PgConnection::connect(&wrong)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("password authentication failed"), "{error}");

    let without = format!("postgres://{user}@127.0.0.1:{}/postgres", cluster.port());
    assert!(
        sqlx::PgConnection::connect(&without).await.is_err(),
        "connected without a password"
    );

    let mut right = sqlx::PgConnection::connect(&cluster.url("postgres"))
        .await
        .unwrap();
    let method: String =
        sqlx::query_scalar("SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host' LIMIT 1")
            .fetch_one(&mut right)
            .await
            .unwrap();
    assert_eq!(method, "scram-sha-256");
    right.close().await.unwrap();
}

#[test]
fn psql_and_create_database_use_the_unix_socket() {
    let cluster = PgCluster::start();
    assert!(cluster
        .socket_dir()
        .join(format!(".s.PGSQL.{}", cluster.port()))
        .exists());
    cluster.create_database("harness check");
    cluster.psql(
        "harness check",
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2);",
    );
    assert_eq!(
        cluster.psql("harness check", "SELECT sum(x) FROM t; SELECT 'second'"),
        "3\nsecond\n"
    );
    let error = cluster
        .try_psql("harness check", "SELECT 1 FROM missing")
        .unwrap_err();
    assert!(
        error.contains("relation \"missing\" does not exist"),
        "{error}"
    );
}
