//! The lifecycle of one tenant in a region: created, suspended and resumed, migrated through
//! its sets, archived (its schema renamed, its access cut, the data kept), restored, and
//! destroyed once deleted past its retention period, each transition checked against the
//! schema and roles the region holds.

use std::collections::{BTreeMap, BTreeSet};

use super::region::RegionPlanner;
use super::sets::live_versions;
use super::types::{utc_timestamp, Action, BlockReason, Scheduled};
use crate::desired::{Scope, Tenant, TenantStatus};
use crate::observed::{HistoryRow, TenantRow};

impl<F: Fn(&str) -> bool> RegionPlanner<'_, F> {
    /// Plans one desired tenant of the region, from its bookkeeping row when it has one.
    pub(super) fn plan_tenant(
        &mut self,
        tenant: &Tenant,
        row: Option<&TenantRow>,
        applied: &BTreeMap<(&str, &str), Vec<&HistoryRow>>,
        region_blocked: &BTreeSet<String>,
    ) {
        let Some(row) = row else {
            // Never created here.
            self.plan_new_tenant(tenant, applied, region_blocked);
            return;
        };
        let slug = tenant.slug.as_str();

        // History is keyed by the schema a migration ran in, tenant_<slug>, also after archiving.
        let live = live_versions(self.desired, &tenant.schema(), applied);
        let current = (row.status, tenant.status);
        match current {
            (TenantStatus::Active | TenantStatus::Suspended, _) => {
                self.plan_active_tenant(tenant, row, &live, applied, region_blocked);
            }
            (TenantStatus::Archived, TenantStatus::Archived) => {
                self.project(slug, row.status, &row.schema_name, live.clone());
            }
            (TenantStatus::Archived, TenantStatus::Deleted) => {
                if self.state.schemas.contains(&row.schema_name) {
                    self.plan_destroy(tenant, row, live.clone());
                } else {
                    self.block(
                        BlockReason::MissingOutOfBand,
                        Some(slug),
                        None,
                        Some(&row.schema_name),
                        format!(
                            "archived schema {} missing, dropped out of band",
                            row.schema_name
                        ),
                    );
                    self.project(slug, row.status, &row.schema_name, live.clone());
                }
            }
            (TenantStatus::Archived, _) => {
                self.plan_restore(tenant, row, &live, applied, region_blocked);
            }
            (TenantStatus::Deleted, TenantStatus::Deleted) => {
                self.projections.insert(slug.to_string(), None);
            }
            (TenantStatus::Deleted, _) => {
                self.block(
                    BlockReason::UnsupportedTransition,
                    Some(slug),
                    None,
                    None,
                    format!("tenant {slug} was destroyed; a destroyed slug is not reused: give the tenant a new slug"),
                );
                self.projections.insert(slug.to_string(), None);
            }
        }
    }

    /// Plans a tenant without a bookkeeping row here: created, migrated, and suspended when so
    /// desired, unless it still lives in another region or its names are taken.
    fn plan_new_tenant(
        &mut self,
        tenant: &Tenant,
        applied: &BTreeMap<(&str, &str), Vec<&HistoryRow>>,
        region_blocked: &BTreeSet<String>,
    ) {
        let slug = tenant.slug.as_str();
        let schema = tenant.schema();
        if matches!(
            tenant.status,
            TenantStatus::Archived | TenantStatus::Deleted
        ) {
            self.projections.insert(slug.to_string(), None);
            return;
        }
        if self.new_tenant_blocked(tenant) {
            return;
        }
        self.out.actions.push(Action::CreateTenant {
            tenant: slug.to_string(),
            schema: schema.clone(),
            owner_role: tenant.owner_role(),
            rw_role: tenant.rw_role(),
        });
        let versions = self.plan_tenant_sets(tenant, &schema, applied, region_blocked);
        if tenant.status == TenantStatus::Suspended {
            self.out.actions.push(Action::SuspendTenant {
                tenant: slug.to_string(),
                schema: schema.clone(),
                rw_role: tenant.rw_role(),
            });
        }
        self.project(slug, tenant.status, &schema, versions);
    }

    /// Blocks creating a tenant that still lives in another region, or whose schema or roles
    /// exist without a bookkeeping row. `true` when blocked.
    fn new_tenant_blocked(&mut self, tenant: &Tenant) -> bool {
        let slug = tenant.slug.as_str();
        let schema = tenant.schema();
        let taken: Vec<String> = [schema.clone(), tenant.owner_role(), tenant.rw_role()]
            .into_iter()
            .filter(|n| self.state.schemas.contains(n) || self.state.roles.contains(n))
            .collect();
        if let Some(other) = self
            .live_anywhere
            .get(slug)
            .filter(|r| **r != self.region.name)
        {
            self.block(
                BlockReason::RegionMove,
                Some(slug),
                None,
                None,
                format!("tenant {slug} still lives in region {other}: neo-reconcile does not move data between regions, so it is not created here"),
            );
            return true;
        }
        if !taken.is_empty() {
            self.block(
                BlockReason::Unmanaged,
                Some(slug),
                None,
                Some(&schema),
                if taken.contains(&schema) {
                    let adopt: Vec<String> = self
                        .desired
                        .schema_sets
                        .iter()
                        .filter(|s| s.scope == Scope::Tenant)
                        .map(|s| format!("`neo-reconcile adopt --tenant {slug} --schema-set {} --at-version <N>`", s.name))
                        .collect();
                    format!("{} already exists without a bookkeeping row: adopt the schema with {} (N = the last migration of the set it already holds; `--from-flyway` instead of `--at-version <N>` reads Flyway's history) or drop the leftovers", taken.join(", "), adopt.join(" then "))
                } else {
                    format!("{} already exists without a bookkeeping row, and schema {schema} does not, so there is nothing to adopt: drop the leftovers", taken.join(", "))
                },
            );
            return true;
        }
        false
    }

    /// Plans a tenant managed here as active or suspended: resumed or suspended, migrated,
    /// archived or deleted as desired, once its schema and roles are all still there.
    fn plan_active_tenant(
        &mut self,
        tenant: &Tenant,
        row: &TenantRow,
        live: &BTreeMap<String, u32>,
        applied: &BTreeMap<(&str, &str), Vec<&HistoryRow>>,
        region_blocked: &BTreeSet<String>,
    ) {
        let slug = tenant.slug.as_str();
        let missing = self.missing(row);
        if !missing.is_empty() {
            self.block(
                BlockReason::MissingOutOfBand,
                Some(slug),
                None,
                Some(&row.schema_name),
                format!("{} missing, dropped out of band: restore from backup; neo-reconcile will not recreate an empty tenant over lost data", missing.join(", ")),
            );
            self.project(slug, row.status, &row.schema_name, live.clone());
            return;
        }
        match tenant.status {
            TenantStatus::Active | TenantStatus::Suspended => {
                if row.status == TenantStatus::Suspended && tenant.status == TenantStatus::Active {
                    self.out.actions.push(Action::ResumeTenant {
                        tenant: slug.to_string(),
                        schema: row.schema_name.clone(),
                        rw_role: row.rw_role.clone(),
                    });
                }
                if row.status == TenantStatus::Active
                    && !self.check_drift(Some(slug), &row.schema_name)
                {
                    self.project(slug, row.status, &row.schema_name, live.clone());
                    return;
                }
                let versions =
                    self.plan_tenant_sets(tenant, &row.schema_name, applied, region_blocked);
                if row.status == TenantStatus::Active && tenant.status == TenantStatus::Suspended {
                    self.out.actions.push(Action::SuspendTenant {
                        tenant: slug.to_string(),
                        schema: row.schema_name.clone(),
                        rw_role: row.rw_role.clone(),
                    });
                }
                self.project(slug, tenant.status, &row.schema_name, versions);
            }
            TenantStatus::Archived => {
                self.plan_archive(slug, row, live);
            }
            TenantStatus::Deleted => {
                // Deleting cuts access at once and keeps the data: the tenant is
                // archived first, and dropped only after the retention period.
                if let Some(archived) = self.plan_archive(slug, row, live) {
                    let policy = &self.desired.policy;
                    if policy.allow_destroy && policy.destroy_after.is_zero() {
                        self.push_destroy(slug, row, &archived);
                    } else if policy.allow_destroy {
                        let due = self.state.now + policy.destroy_after.as_secs() as i64;
                        self.schedule_destroy(slug, &archived, due);
                    }
                }
            }
        }
    }

    /// The schema and roles of a managed tenant that no longer exist.
    fn missing<'r>(&self, row: &'r TenantRow) -> Vec<&'r str> {
        [&row.schema_name]
            .into_iter()
            .filter(|s| !self.state.schemas.contains(*s))
            .chain(
                [&row.owner_role, &row.rw_role]
                    .into_iter()
                    .filter(|r| !self.state.roles.contains(*r)),
            )
            .map(String::as_str)
            .collect()
    }

    /// Archives a tenant (its schema renamed to `archived_<slug>_<date>`, its rw role cut
    /// off, the data kept); returns the archived schema's name, or `None` when blocked.
    fn plan_archive(
        &mut self,
        slug: &str,
        row: &TenantRow,
        live: &BTreeMap<String, u32>,
    ) -> Option<String> {
        let archived = crate::desired::identifiers::archived_schema(slug, &self.state.today);
        if self.state.schemas.contains(&archived) {
            self.block(
                BlockReason::Unmanaged,
                Some(slug),
                None,
                Some(&archived),
                format!("cannot archive tenant {slug}: schema {archived} already exists; rename or drop it first"),
            );
            self.project(slug, row.status, &row.schema_name, live.clone());
            return None;
        }
        self.out.actions.push(Action::ArchiveTenant {
            tenant: slug.to_string(),
            schema: row.schema_name.clone(),
            archived_schema: archived.clone(),
            rw_role: row.rw_role.clone(),
        });
        self.project(slug, TenantStatus::Archived, &archived, live.clone());
        Some(archived)
    }

    /// Brings an archived tenant back to `active` or `suspended`: its schema renamed back,
    /// then its sets migrated as for any tenant.
    fn plan_restore(
        &mut self,
        tenant: &Tenant,
        row: &TenantRow,
        live: &BTreeMap<String, u32>,
        applied: &BTreeMap<(&str, &str), Vec<&HistoryRow>>,
        region_blocked: &BTreeSet<String>,
    ) {
        let slug = tenant.slug.as_str();
        let schema = tenant.schema();
        let missing = self.missing(row);
        let message = if !missing.is_empty() {
            Some((
                BlockReason::MissingOutOfBand,
                format!("cannot restore archived tenant {slug}: {} missing, dropped out of band; restore from backup", missing.join(", ")),
            ))
        } else if self.state.schemas.contains(&schema) {
            Some((
                BlockReason::Unmanaged,
                format!("cannot restore archived tenant {slug} from schema {}: schema {schema} already exists; rename or drop it first", row.schema_name),
            ))
        } else {
            None
        };
        if let Some((reason, message)) = message {
            self.block(reason, Some(slug), None, Some(&row.schema_name), message);
            self.project(slug, row.status, &row.schema_name, live.clone());
            return;
        }
        self.out.actions.push(Action::RestoreTenant {
            tenant: slug.to_string(),
            archived_schema: row.schema_name.clone(),
            schema: schema.clone(),
            rw_role: row.rw_role.clone(),
        });
        let versions = self.plan_tenant_sets(tenant, &schema, applied, region_blocked);
        if tenant.status == TenantStatus::Suspended {
            self.out.actions.push(Action::SuspendTenant {
                tenant: slug.to_string(),
                schema: schema.clone(),
                rw_role: row.rw_role.clone(),
            });
        }
        self.project(slug, tenant.status, &schema, versions);
    }

    fn push_destroy(&mut self, slug: &str, row: &TenantRow, schema: &str) {
        self.out.actions.push(Action::DestroyTenant {
            tenant: slug.to_string(),
            schema: schema.to_string(),
            owner_role: row.owner_role.clone(),
            rw_role: row.rw_role.clone(),
        });
        self.projections.insert(slug.to_string(), None);
    }

    fn schedule_destroy(&mut self, slug: &str, schema: &str, due: i64) {
        self.out.scheduled.push(Scheduled {
            kind: "destroy_tenant".into(),
            tenant: slug.to_string(),
            schema: schema.to_string(),
            due: utc_timestamp(due),
        });
    }

    /// A deleted tenant whose schema is archived: dropped once `destroy_after` has passed
    /// since it was archived, and only with `allow_destroy = true`.
    fn plan_destroy(&mut self, tenant: &Tenant, row: &TenantRow, versions: BTreeMap<String, u32>) {
        let slug = tenant.slug.as_str();
        let policy = &self.desired.policy;
        if !policy.allow_destroy {
            self.block(
                BlockReason::DestroyNotAllowed,
                Some(slug),
                None,
                Some(&row.schema_name),
                format!("tenant {slug} is deleted: its access is cut and its data kept in schema {}; neo.toml has [policy] allow_destroy = false, so it is never dropped: set allow_destroy = true in a reviewed change to drop it", row.schema_name),
            );
            self.project(slug, row.status, &row.schema_name, versions);
            return;
        }
        let Some(archived_at) = row.archived_at else {
            self.block(
                BlockReason::UnsupportedTransition,
                Some(slug),
                None,
                Some(&row.schema_name),
                format!("tenant {slug} is deleted but the time it was archived is not recorded, so its retention period cannot be told: drop schema {} by hand once it may go", row.schema_name),
            );
            self.project(slug, row.status, &row.schema_name, versions);
            return;
        };
        let due = archived_at.saturating_add(policy.destroy_after.as_secs() as i64);
        if self.state.now >= due {
            self.push_destroy(slug, row, &row.schema_name);
        } else {
            self.schedule_destroy(slug, &row.schema_name, due);
            self.project(slug, row.status, &row.schema_name, versions);
        }
    }
}
