//! The one reconcile entry point, driven as the daemon will drive it: through the library,
//! with a credential source of the test's own.

use std::collections::BTreeMap;

use neo_reconcile::apply::RunContext;
use neo_reconcile::db;
use neo_reconcile::engine;
use neo_reconcile::reconcile::{self, Approval, Mode, RegionStatus, Selection};
use neo_reconcile::shutdown::Shutdown;

use crate::support::logins::Logins;
use crate::world::World;

#[test]
fn an_apply_reads_each_region_s_credentials_exactly_once() {
    let w = World::new();
    let counting = Logins::new(&w.logins);
    let desired = engine::load_desired(w.tree.path()).expect("the example is valid");
    let selection = Selection::default();
    let approve = |_: &neo_reconcile::plan::Plan, _: &str| Approval::Approved;
    let mode = Mode::Apply {
        saved: None,
        approve: &approve,
        ctx: RunContext::current("reconcile test".into(), None),
        allow_mass_prune: false,
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
    let fetches = counting.fetches();
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
    let counting = Logins::new(&w.logins);
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
        counting.fetches(),
        BTreeMap::from([("eu-west".to_string(), 1)])
    );
    assert_eq!(before, w.snapshot());
}
