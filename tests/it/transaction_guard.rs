//! The second wall behind `validate`: a migration whose own transaction control ends the
//! transaction apply opened for it is failed and rolled back, never recorded as applied.
//! The migration's text is changed in memory after loading, so validation is bypassed.

use neo_reconcile::apply::{self, RunContext};
use neo_reconcile::db;
use neo_reconcile::desired::Region;
use neo_reconcile::engine;
use neo_reconcile::shutdown::Shutdown;
use neo_reconcile::sources::credentials::{CredentialError, Credentials, DbCredentials, Secret};

use crate::world::World;

/// The world's logins, handed out without the environment (tests run in parallel threads).
struct Logins(Vec<(String, String)>);

impl Credentials for Logins {
    fn fetch<'a>(
        &'a self,
        region: &'a Region,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<DbCredentials, CredentialError>> + Send + 'a>,
    > {
        Box::pin(async move {
            let prefix = match &region.credentials.source {
                neo_reconcile::desired::CredentialSource::Env(p) => p.clone(),
                _ => return Err(CredentialError::MissingEnv("test".into(), "test".into())),
            };
            let password = self
                .0
                .iter()
                .find(|(p, _)| *p == prefix)
                .map(|(_, pw)| pw.clone())
                .ok_or_else(|| CredentialError::MissingEnv(prefix.clone(), prefix.clone()))?;
            Ok(DbCredentials {
                username: "neo_migrator".into(),
                password: Secret::new(password),
                lease: None,
            })
        })
    }
}

#[test]
fn a_migration_that_commits_the_apply_transaction_is_failed_and_rolled_back() {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    w.write(
        "schemas/tenant_template/V7__guarded.sql",
        "CREATE TABLE guard_a (x int);\n",
    );
    w.edit("neo.toml", |s| s.replace("target = 5 ", "target = 7 "));
    w.edit("tenants/acme.toml", |s| {
        s.replace("tenant_template = 6", "tenant_template = 7")
    });

    let mut desired = engine::load_desired(w.tree.path()).expect("the tree is valid");
    let set = desired
        .schema_sets
        .iter_mut()
        .find(|s| s.name == "tenant_template")
        .unwrap();
    // What validation would refuse: the file ends apply's transaction and opens another.
    set.migrations[6].sql =
        "CREATE TABLE guard_a (x int);\nCOMMIT;\nBEGIN;\nCREATE TABLE guard_b (x int);\n".into();

    let logins = Logins(
        w.logins
            .iter()
            .map(|(p, pw)| (p.to_string(), pw.clone()))
            .collect(),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let report = runtime.block_on(async {
        let options = engine::plan_options(&desired, &[], &["acme".to_string()]).unwrap();
        let regions = engine::regions_to_observe(&desired, &options);
        let connectors = db::resolve(&regions, &logins).await;
        let (_, plan) = engine::observe_and_plan(&desired, &options, &connectors).await;
        let ctx = RunContext::current("transaction guard test".into(), None);
        apply::apply(
            &desired,
            &plan,
            &options,
            &connectors,
            &ctx,
            "",
            &Shutdown::never(),
        )
        .await
    });

    let us = report.regions.iter().find(|r| r.name == "us-east").unwrap();
    let failure = us
        .failed
        .iter()
        .find(|f| f.tenant == "acme")
        .unwrap_or_else(|| panic!("acme did not fail: {report:#?}"));
    assert!(
        failure
            .error
            .contains("ended the transaction neo-reconcile opened"),
        "{}",
        failure.error
    );
    let history = w.us.psql(
        "neo_us",
        "SELECT string_agg(success::text, ',' ORDER BY id) FROM neo_reconcile.schema_history \
         WHERE target_schema = 'tenant_acme' AND version = 7",
    );
    assert_eq!(
        history.trim(),
        "false",
        "V7 must be recorded as failed only"
    );
    // What ran after the file's own BEGIN was rolled back, wherever it would have landed.
    let guard_b = w.us.psql(
        "neo_us",
        "SELECT count(*) FROM pg_class WHERE relname = 'guard_b'",
    );
    assert_eq!(guard_b.trim(), "0");
}
