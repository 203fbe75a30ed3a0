//! The one reconcile entry point, driven as the daemon will drive it: through the library,
//! with a credential source of the test's own.

use std::collections::BTreeMap;
use std::sync::Mutex;

use neo_reconcile::apply::RunContext;
use neo_reconcile::db;
use neo_reconcile::desired::{CredentialSource, Region};
use neo_reconcile::engine;
use neo_reconcile::reconcile::{self, Approval, Mode, RegionStatus, Selection};
use neo_reconcile::shutdown::Shutdown;
use neo_reconcile::sources::credentials::{CredentialError, Credentials, DbCredentials, Secret};

use crate::world::World;

/// Hands out the world's logins and counts how often each region asked.
struct Counting {
    logins: Vec<(String, String)>,
    fetches: Mutex<BTreeMap<String, u32>>,
}

impl Credentials for Counting {
    fn fetch<'a>(
        &'a self,
        region: &'a Region,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<DbCredentials, CredentialError>> + Send + 'a>,
    > {
        Box::pin(async move {
            *self
                .fetches
                .lock()
                .unwrap()
                .entry(region.name.clone())
                .or_default() += 1;
            let CredentialSource::Env(prefix) = &region.credentials.source else {
                return Err(CredentialError::MissingEnv("test".into(), "test".into()));
            };
            let (_, password) = self
                .logins
                .iter()
                .find(|(p, _)| p == prefix)
                .expect("a login per region");
            Ok(DbCredentials {
                username: "neo_migrator".into(),
                password: Secret::new(password.clone()),
                lease: None,
            })
        })
    }
}

#[test]
fn an_apply_reads_each_region_s_credentials_exactly_once() {
    let w = World::new();
    let counting = Counting {
        logins: w
            .logins
            .iter()
            .map(|(p, pw)| (p.to_string(), pw.clone()))
            .collect(),
        fetches: Mutex::new(BTreeMap::new()),
    };
    let desired = engine::load_desired(w.tree.path()).expect("the example is valid");
    let selection = Selection::default();
    let approve = |_: &neo_reconcile::plan::Plan, _: &str| Approval::Approved;
    let mode = Mode::Apply {
        saved: None,
        approve: &approve,
        ctx: RunContext::current("reconcile test".into(), None),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let outcome = runtime.block_on(async {
        let options = reconcile::plan_options(&desired, &selection).unwrap();
        let regions = engine::regions_to_observe(&desired, &options);
        let connectors = db::resolve(&regions, &counting).await;
        reconcile::once(&desired, &selection, &mode, &connectors, &Shutdown::never())
            .await
            .unwrap()
    });

    // The whole apply (observe, lock, re-plan, bootstrap, workers, registry) on one login
    // per region.
    let fetches = counting.fetches.lock().unwrap().clone();
    assert_eq!(
        fetches,
        BTreeMap::from([("eu-west".to_string(), 1), ("us-east".to_string(), 1)])
    );
    let report = outcome.report.expect("apply ran");
    assert!(report.regions.iter().all(|r| r.applied > 0), "{report:#?}");
    // The example's deleted tenant without allow_destroy never existed: nothing blocks.
    for (name, status) in &outcome.regions {
        assert_eq!(status, &RegionStatus::Converged, "region {name}");
    }
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
}

#[test]
fn plan_mode_reports_pending_changes_and_changes_nothing() {
    let w = World::new();
    let before = w.snapshot();
    let counting = Counting {
        logins: w
            .logins
            .iter()
            .map(|(p, pw)| (p.to_string(), pw.clone()))
            .collect(),
        fetches: Mutex::new(BTreeMap::new()),
    };
    let desired = engine::load_desired(w.tree.path()).unwrap();
    let selection = Selection {
        regions: vec!["eu-west".into()],
        tenants: vec![],
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let outcome = runtime.block_on(async {
        let options = reconcile::plan_options(&desired, &selection).unwrap();
        let regions = engine::regions_to_observe(&desired, &options);
        let connectors = db::resolve(&regions, &counting).await;
        reconcile::once(
            &desired,
            &selection,
            &Mode::Plan,
            &connectors,
            &Shutdown::never(),
        )
        .await
        .unwrap()
    });
    assert!(outcome.report.is_none() && outcome.plan_text.is_none());
    assert_eq!(outcome.regions.len(), 1);
    assert!(
        matches!(outcome.regions[0], (ref n, RegionStatus::ChangesPending(c)) if n == "eu-west" && c > 0),
        "{:?}",
        outcome.regions
    );
    assert_eq!(
        counting.fetches.lock().unwrap().clone(),
        BTreeMap::from([("eu-west".to_string(), 1)])
    );
    assert_eq!(before, w.snapshot());
}
