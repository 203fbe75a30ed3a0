//! Live-schema drift against real clusters: out-of-band changes in tenant and region-scope
//! schemas are reported with their diff lines, block under `drift = "report"`, and are put
//! back under `drift = "repair"` as far as they carry no data.

use crate::world::World;

/// A world applied once, with two more active tenants in us-east (`d1`, and `d2` pinned at
/// V4, behind the fleet), so that each out-of-band change has a tenant of its own.
fn applied_world() -> World {
    let w = World::new();
    for (slug, pin) in [("d1", ""), ("d2", "\n[schema_sets]\ntenant_template = 4\n")] {
        w.write(
            &format!("tenants/{slug}.toml"),
            &format!("slug = \"{slug}\"\nregion = \"us-east\"\nresidency = \"US\"\nstatus = \"active\"\n{pin}"),
        );
    }
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    w
}

/// The out-of-band changes: an index dropped in acme, a column added in globex, a view
/// replaced in d1, a grant to a role that should not have it in d2, and a view dropped in
/// eu-west's platform_common.
fn break_things(w: &World) {
    w.us.psql(
        "neo_us",
        "CREATE ROLE intruder NOLOGIN;
         DROP INDEX tenant_acme.projects_owner_id_idx;
         ALTER TABLE tenant_globex.users ADD COLUMN nickname text;
         CREATE OR REPLACE VIEW tenant_d1.active_projects AS
             SELECT p.id, p.name, p.description, p.visibility, p.created_at, p.updated_at,
                    u.id AS owner_id, u.display_name AS owner_name, u.email AS owner_email
               FROM tenant_d1.projects p JOIN tenant_d1.users u ON u.id = p.owner_id;
         GRANT SELECT ON tenant_d2.users TO intruder;",
    );
    w.eu.psql("neo_eu", "DROP VIEW platform_common.plan_features;");
}

#[test]
fn drift_is_reported_with_its_diff_and_blocks_the_target() {
    let w = applied_world();
    // A clean fleet, with acme pinned at V6 (a no-transaction migration), d2 pinned at V4 and
    // the others at V5, has no drift: each is compared with the shape of its own versions.
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
    break_things(&w);
    let run = w.neo("plan", &["--detailed-exitcode"]);
    run.expect_code(1);
    let out = &run.stdout;
    for expected in [
        "! drift tenant acme: tenant_template V6 (schema tenant_acme, blocked)",
        "      -index projects_owner_id_idx ON projects USING btree (owner_id)",
        "! drift tenant globex: tenant_template V5 (schema tenant_globex, blocked)",
        "      +column users.nickname text NULL",
        "! drift tenant d1: tenant_template V5",
        "! drift tenant d2: tenant_template V4",
        "      +grant SELECT on table users to intruder",
        "! drift platform_common: platform_common V3 (schema platform_common, blocked)",
        "      -view plan_features AS",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    // The view's diff shows its old and new definition.
    assert!(
        out.contains("      -view active_projects AS")
            && out.contains("      +view active_projects AS"),
        "{out}"
    );
    // Only the changed tenants drift: hooli and stark (eu-west) do not.
    assert!(
        !out.contains("drift tenant hooli") && !out.contains("drift tenant stark"),
        "{out}"
    );
    // The JSON and Markdown plans carry the same entries.
    let json = w.neo("plan", &["--format", "json"]).json();
    let drift: Vec<&serde_json::Value> = json["regions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["drift"].as_array().cloned().unwrap_or_default())
        .collect::<Vec<_>>()
        .leak()
        .iter()
        .collect();
    assert_eq!(drift.len(), 5, "{json}");
    assert!(drift.iter().any(|d| d["tenant"] == "globex"
        && d["diff"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "+column users.nickname text NULL")));
    let md = w.neo("plan", &["--format", "markdown"]).stdout;
    assert!(md.contains("+column users.nickname text NULL"), "{md}");
}

#[test]
fn drift_repair_puts_back_definitions_and_grants_and_leaves_columns_blocked() {
    let w = applied_world();
    w.edit("neo.toml", |s| {
        s.replace(
            "depends_on = [\"platform_common\"]",
            "depends_on = [\"platform_common\"]\ndrift = \"repair\"",
        )
        .replace(
            "scope = \"region\"          #",
            "drift = \"repair\"\nscope = \"region\"          #",
        )
    });
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
    break_things(&w);
    // A grant taken away is drift too.
    w.us.psql(
        "neo_us",
        "REVOKE SELECT ON tenant_d2.projects FROM tenant_d2_rw;",
    );
    let run = w.neo("plan", &["--detailed-exitcode", "--show-sql"]);
    // globex's added column cannot be put back: the plan stays blocked.
    run.expect_code(1);
    let out = &run.stdout;
    for expected in [
        "~ repair_drift tenant acme: put back definitions of tenant_template V6 in schema tenant_acme (1 statement)",
        "| CREATE INDEX projects_owner_id_idx ON projects USING btree (owner_id);",
        "~ drift tenant acme: tenant_template V6 (schema tenant_acme, repaired)",
        "~ repair_drift tenant d1:",
        "| DROP VIEW active_projects;",
        "~ repair_drift tenant d2:",
        "| REVOKE SELECT ON TABLE users FROM intruder;",
        "| GRANT SELECT ON TABLE projects TO \"tenant_d2_rw\";",
        "~ repair_drift platform_common:",
        "! drift tenant globex: tenant_template V5 (schema tenant_globex, blocked)",
        "      +column users.nickname text NULL",
        "! blocked tenant globex: the live schema tenant_globex differs",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    w.neo("apply", &["--auto-approve"]);
    // Everything but the column is back; the next plan shows only globex.
    let after = w.neo("plan", &["--detailed-exitcode"]);
    after.expect_code(1);
    assert_eq!(
        after.stdout.matches(" drift ").count(),
        1,
        "{}",
        after.stdout
    );
    assert!(
        after.stdout.contains("! drift tenant globex"),
        "{}",
        after.stdout
    );
    assert_eq!(
        w.us.psql(
            "neo_us",
            "SELECT has_table_privilege('intruder', 'tenant_d2.users', 'SELECT'),
                    has_table_privilege('tenant_d2_rw', 'tenant_d2.projects', 'SELECT'),
                    to_regclass('tenant_acme.projects_owner_id_idx') IS NOT NULL"
        )
        .trim(),
        "f|t|t"
    );
    for slug in ["acme", "d1", "d2"] {
        w.neo("plan", &["--tenant", slug, "--detailed-exitcode"])
            .expect_code(0);
    }
}

#[test]
fn accept_drift_unblocks_one_tenant_and_records_who_accepted_it() {
    let w = applied_world();
    break_things(&w);
    let accept = w.neo(
        "adopt",
        &["--accept-drift", "globex", "--reason", "hotfix INC-42"],
    );
    accept.expect_code(0);
    assert!(
        accept
            .stdout
            .contains("accepted the live shape of tenant_globex at tenant_template V5"),
        "{}",
        accept.stdout
    );
    let plan = w.neo("plan", &["--region", "us-east"]);
    assert!(
        !plan.stdout.contains("drift tenant globex"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("! drift tenant acme"),
        "{}",
        plan.stdout
    );
    w.neo("plan", &["--tenant", "globex", "--detailed-exitcode"])
        .expect_code(0);
    let row = w.us.psql(
        "neo_us",
        "SELECT target_schema, versions, reason, accepted_by LIKE '%(neo_migrator)'
         FROM neo_reconcile.accepted_drift",
    );
    assert_eq!(
        row.trim(),
        "tenant_globex|tenant_template V5|hotfix INC-42|t"
    );
    // A further change is drift again.
    w.us.psql(
        "neo_us",
        "ALTER TABLE tenant_globex.users ADD COLUMN nickname2 text;",
    );
    let again = w.neo("plan", &["--tenant", "globex", "--detailed-exitcode"]);
    again.expect_code(1);
    assert!(
        again.stdout.contains("+column users.nickname text NULL")
            && again.stdout.contains("+column users.nickname2 text NULL"),
        "{}",
        again.stdout
    );
}

/// Adds one active us-east tenant per slug to `w`'s tree (not applied).
fn add_tenants(w: &World, slugs: &[&str]) {
    for slug in slugs {
        w.write(
            &format!("tenants/{slug}.toml"),
            &format!("slug = \"{slug}\"\nregion = \"us-east\"\nresidency = \"US\"\nstatus = \"active\"\n"),
        );
    }
}

/// The diff lines (`-`/`+`) under the `! drift` entry that starts with `header`, in order.
fn diff_of(out: &str, header: &str) -> Vec<String> {
    let mut lines = out.lines().skip_while(|l| !l.starts_with(header));
    assert!(lines.next().is_some(), "no {header:?} in:\n{out}");
    lines
        .take_while(|l| l.starts_with("      "))
        .map(str::trim_start)
        .filter(|l| !l.starts_with("---") && !l.starts_with("+++"))
        .map(String::from)
        .collect()
}

/// The number of drift entries (reported or repaired) in a plan's text output.
fn drift_count(out: &str) -> usize {
    out.lines()
        .filter(|l| l.starts_with("  ! drift ") || l.starts_with("  ~ drift "))
        .count()
}

/// The diff lines `neo-reconcile plan` prints for each tenant of
/// `each_kind_of_out_of_band_change_is_reported_in_its_own_tenant_only` but `own` (see there).
const KIND_DIFFS: [(&str, &[&str]); 9] = [
    (
        "ty",
        &[
            "-column users.created_at timestamp with time zone NOT NULL DEFAULT now()",
            "+column users.created_at timestamp without time zone NOT NULL DEFAULT now()",
        ],
    ),
    (
        "nul",
        &[
            "-column users.display_name text NOT NULL",
            "+column users.display_name text NULL",
        ],
    ),
    (
        "def",
        &[
            "-column projects.visibility text NOT NULL DEFAULT 'private'::text",
            "+column projects.visibility text NOT NULL DEFAULT 'public'::text",
        ],
    ),
    (
        "chk",
        &["-constraint projects.projects_name_not_blank_check CHECK ((btrim(name) <> ''::text))"],
    ),
    (
        "fun",
        &[
            "+function project_count() CREATE OR REPLACE FUNCTION project_count() RETURNS bigint LANGUAGE sql STABLE RETURN (SELECT count(*) AS count FROM projects)",
            "+function project_count() owner postgres",
            "+grant EXECUTE on function project_count() to PUBLIC",
            "+grant EXECUTE on function project_count() to postgres",
        ],
    ),
    (
        "trg",
        &["+trigger users.users_touch CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION public.noop_trigger()"],
    ),
    (
        "seqadd",
        &[
            "+grant SELECT on sequence invoice_no to postgres",
            "+grant UPDATE on sequence invoice_no to postgres",
            "+grant USAGE on sequence invoice_no to postgres",
            "+sequence invoice_no bigint start 1 increment 1 min 1 max 9223372036854775807 cache 1",
            "+sequence invoice_no owner postgres",
        ],
    ),
    (
        "seqinc",
        &[
            "-sequence projects_id_seq bigint start 1 increment 1 min 1 max 9223372036854775807 cache 1",
            "+sequence projects_id_seq bigint start 1 increment 10 min 1 max 9223372036854775807 cache 1",
        ],
    ),
    (
        "col",
        &["-column users.created_at timestamp with time zone NOT NULL DEFAULT now()"],
    ),
];

#[test]
fn each_kind_of_out_of_band_change_is_reported_in_its_own_tenant_only() {
    let w = World::new();
    let kinds = [
        "ty", "nul", "def", "chk", "fun", "trg", "seqadd", "seqinc", "own", "col",
    ];
    add_tenants(&w, &kinds);
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
    // One change per tenant, made by the superuser; the trigger's function lives outside the
    // tenant's schema, so the trigger is the only new object of tenant_trg.
    w.us.psql(
        "neo_us",
        "CREATE ROLE intruder NOLOGIN;
         CREATE FUNCTION public.noop_trigger() RETURNS trigger LANGUAGE plpgsql
             AS $$BEGIN RETURN NEW; END$$;
         ALTER TABLE tenant_ty.users ALTER COLUMN created_at TYPE timestamp;
         ALTER TABLE tenant_nul.users ALTER COLUMN display_name DROP NOT NULL;
         ALTER TABLE tenant_def.projects ALTER COLUMN visibility SET DEFAULT 'public';
         ALTER TABLE tenant_chk.projects DROP CONSTRAINT projects_name_not_blank_check;
         CREATE FUNCTION tenant_fun.project_count() RETURNS bigint LANGUAGE sql STABLE
             RETURN (SELECT count(*) FROM tenant_fun.projects);
         CREATE TRIGGER users_touch BEFORE UPDATE ON tenant_trg.users
             FOR EACH ROW EXECUTE FUNCTION public.noop_trigger();
         CREATE SEQUENCE tenant_seqadd.invoice_no;
         ALTER TABLE tenant_seqinc.projects ALTER COLUMN id SET INCREMENT BY 10;
         ALTER TABLE tenant_own.projects OWNER TO intruder;
         ALTER TABLE tenant_col.users DROP COLUMN created_at;
         CREATE OR REPLACE FUNCTION platform_common.plan_has_feature(plan_code text, flag_key text)
             RETURNS boolean LANGUAGE sql STABLE RETURN false;",
    );
    let run = w.neo("plan", &["--detailed-exitcode"]);
    run.expect_code(1);
    let out = &run.stdout;
    for (slug, lines) in KIND_DIFFS {
        assert_eq!(
            diff_of(
                out,
                &format!(
                    "  ! drift tenant {slug}: tenant_template V5 (schema tenant_{slug}, blocked)"
                )
            ),
            lines,
            "tenant {slug} in:\n{out}"
        );
    }
    // A new owner is a change of the table's and its identity sequence's owner, and of every
    // privilege the owner holds on them.
    let own = diff_of(out, "  ! drift tenant own: tenant_template V5");
    for line in [
        "-table projects owner @owner",
        "+table projects owner intruder",
        "-sequence projects_id_seq owner @owner",
        "+sequence projects_id_seq owner intruder",
        "-grant SELECT on table projects to @owner",
        "+grant SELECT on table projects to intruder",
        "-grant USAGE on sequence projects_id_seq to @owner",
        "+grant USAGE on sequence projects_id_seq to intruder",
    ] {
        assert!(
            own.iter().any(|l| l == line),
            "missing {line:?} in {own:#?}"
        );
    }
    assert_eq!(own.len(), 24, "{own:#?}");
    assert!(
        own.iter()
            .all(|l| l.ends_with("@owner") || l.ends_with("intruder")),
        "{own:#?}"
    );
    // A function replaced in us-east's platform_common is drift there, and not in eu-west's.
    assert_eq!(
        diff_of(out, "  ! drift platform_common: platform_common V3")
            .iter()
            .map(|l| &l[..1])
            .collect::<String>(),
        "-+",
        "{out}"
    );
    assert!(
        out.contains("+function plan_has_feature(plan_code text, flag_key text) CREATE OR REPLACE FUNCTION plan_has_feature(plan_code text, flag_key text) RETURNS boolean LANGUAGE sql STABLE RETURN false"),
        "{out}"
    );
    // Exactly the changed targets drift: not acme, globex or initech next to them, not
    // eu-west's schemas.
    assert_eq!(drift_count(out), kinds.len() + 1, "{out}");
    let eu = out.split("Region us-east").next().unwrap();
    assert!(
        eu.contains("Region eu-west") && !eu.contains("drift"),
        "{out}"
    );
}

#[test]
fn drift_repair_puts_back_a_dropped_or_changed_function_and_leaves_a_dropped_column_blocked() {
    let w = World::new();
    w.edit("neo.toml", |s| {
        s.replace(
            "depends_on = [\"platform_common\"]",
            "depends_on = [\"platform_common\"]\ndrift = \"repair\"",
        )
        .replace(
            "scope = \"region\"          #",
            "drift = \"repair\"\nscope = \"region\"          #",
        )
    });
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
    // The view plan_features calls the function: dropping it takes the view along.
    w.eu.psql(
        "neo_eu",
        "DROP FUNCTION platform_common.plan_has_feature(text, text) CASCADE;",
    );
    // In us-east the function is replaced in place, the view still calling it.
    w.us.psql(
        "neo_us",
        "ALTER TABLE tenant_globex.users DROP COLUMN created_at;
         CREATE OR REPLACE FUNCTION platform_common.plan_has_feature(plan_code text, flag_key text)
             RETURNS boolean LANGUAGE sql STABLE RETURN false;",
    );
    let run = w.neo("plan", &["--detailed-exitcode", "--show-sql"]);
    // The dropped column cannot be put back: the plan is blocked.
    run.expect_code(1);
    let out = &run.stdout;
    for expected in [
        "~ repair_drift platform_common: put back definitions of platform_common V3 in schema platform_common (11 statements)",
        "| CREATE OR REPLACE FUNCTION plan_has_feature(plan_code text, flag_key text)",
        "| CREATE VIEW plan_features AS",
        "| GRANT EXECUTE ON FUNCTION plan_has_feature(plan_code text, flag_key text) TO PUBLIC;",
        "~ drift platform_common: platform_common V3 (schema platform_common, repaired)",
        "      -function plan_has_feature(plan_code text, flag_key text) owner @owner",
        "! blocked tenant globex: the live schema tenant_globex differs",
        "~ repair_drift platform_common: put back definitions of platform_common V3 in schema platform_common (1 statement)",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert_eq!(
        out.matches(
            "~ drift platform_common: platform_common V3 (schema platform_common, repaired)"
        )
        .count(),
        2,
        "{out}"
    );
    // The function is created before the view that calls it.
    assert!(
        out.find("| CREATE OR REPLACE FUNCTION plan_has_feature")
            < out.find("| CREATE VIEW plan_features"),
        "{out}"
    );
    let column = ["-column users.created_at timestamp with time zone NOT NULL DEFAULT now()"];
    let globex = "  ! drift tenant globex: tenant_template V5 (schema tenant_globex, blocked)";
    assert_eq!(diff_of(out, globex), column, "{out}");
    // Everything that could run did; the column is left for a human (exit 4).
    w.neo("apply", &["--auto-approve"]).expect_code(4);
    assert_eq!(
        w.eu.psql(
            "neo_eu",
            "SELECT platform_common.plan_has_feature('enterprise', 'no-such-flag'),
                    to_regclass('platform_common.plan_features') IS NOT NULL"
        )
        .trim(),
        "f|t"
    );
    assert_eq!(
        w.us.psql(
            "neo_us",
            "SELECT platform_common.plan_has_feature('enterprise', 'sso.saml')"
        )
        .trim(),
        "t"
    );
    w.neo("plan", &["--region", "eu-west", "--detailed-exitcode"])
        .expect_code(0);
    let after = w.neo("plan", &["--detailed-exitcode"]);
    after.expect_code(1);
    assert_eq!(drift_count(&after.stdout), 1, "{}", after.stdout);
    assert_eq!(diff_of(&after.stdout, globex), column, "{}", after.stdout);
}

/// The `versions` of the expected shapes cached in a region, one per line, sorted.
fn cached_versions(cluster: &crate::support::pg::PgCluster, db: &str) -> String {
    cluster.psql(
        db,
        "SELECT versions FROM neo_reconcile.expected_shapes
         WHERE failure IS NULL AND server_major = current_setting('server_version_num')::int / 10000
         ORDER BY versions",
    )
}

#[test]
fn a_fresh_apply_caches_one_expected_shape_per_set_versions_and_the_next_plan_is_clean() {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    let plan = w.neo("plan", &["--detailed-exitcode"]);
    plan.expect_code(0);
    assert!(!plan.stdout.contains("drift"), "{}", plan.stdout);
    // us-east: platform_common, the fleet (globex, initech) at V5 and acme's pin at V6;
    // eu-west: platform_common and hooli and stark at V5. One row each, not one per tenant.
    assert_eq!(
        cached_versions(&w.us, "neo_us").trim(),
        "platform_common V3\ntenant_template V5\ntenant_template V6"
    );
    assert_eq!(
        cached_versions(&w.eu, "neo_eu").trim(),
        "platform_common V3\ntenant_template V5"
    );
    // A tenant pinned at other versions adds the shape of those, once.
    w.write(
        "tenants/d2.toml",
        "slug = \"d2\"\nregion = \"eu-west\"\nresidency = \"EU\"\nstatus = \"active\"\n\n[schema_sets]\ntenant_template = 4\n",
    );
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
    assert_eq!(
        cached_versions(&w.eu, "neo_eu").trim(),
        "platform_common V3\ntenant_template V4\ntenant_template V5"
    );
    assert_eq!(
        cached_versions(&w.us, "neo_us").trim(),
        "platform_common V3\ntenant_template V5\ntenant_template V6"
    );
}

#[test]
fn drift_prune_drops_extra_definitions_and_the_next_plan_is_clean() {
    let w = World::new();
    w.edit("neo.toml", |s| {
        s.replace(
            "depends_on = [\"platform_common\"]",
            "depends_on = [\"platform_common\"]\ndrift = \"repair\"\ndrift_prune = true",
        )
    });
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    // Extra objects of every kind that carries no data, each with its own owner and grants.
    w.us.psql(
        "neo_us",
        "CREATE FUNCTION public.noop_trigger() RETURNS trigger LANGUAGE plpgsql
             AS $$BEGIN RETURN NEW; END$$;
         CREATE INDEX projects_name_idx ON tenant_globex.projects (name);
         CREATE TRIGGER users_touch BEFORE UPDATE ON tenant_globex.users
             FOR EACH ROW EXECUTE FUNCTION public.noop_trigger();
         ALTER TABLE tenant_globex.users ADD CONSTRAINT users_name_check CHECK (display_name <> '');
         CREATE VIEW tenant_globex.all_users AS SELECT id, email FROM tenant_globex.users;
         CREATE FUNCTION tenant_globex.user_count() RETURNS bigint LANGUAGE sql STABLE
             RETURN (SELECT count(*) FROM tenant_globex.users);",
    );
    let run = w.neo("plan", &["--detailed-exitcode", "--show-sql"]);
    // Everything can be put back: a plan with changes.
    run.expect_code(2);
    let out = &run.stdout;
    for expected in [
        "~ drift tenant globex: tenant_template V5 (schema tenant_globex, repaired)",
        "      +view all_users AS SELECT users.id, users.email FROM users;",
        "      +function user_count() owner postgres",
        "| DROP TRIGGER users_touch ON users;",
        "| ALTER TABLE users DROP CONSTRAINT users_name_check;",
        "| DROP VIEW all_users;",
        "| DROP INDEX projects_name_idx;",
        "| DROP FUNCTION user_count();",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    let apply = w.neo("apply", &["--auto-approve"]);
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
    assert_eq!(
        w.us.psql(
            "neo_us",
            "SELECT to_regclass('tenant_globex.projects_name_idx'),
                    to_regclass('tenant_globex.all_users'),
                    to_regprocedure('tenant_globex.user_count()'),
                    (SELECT count(*) FROM pg_trigger WHERE tgname = 'users_touch'),
                    (SELECT count(*) FROM pg_constraint WHERE conname = 'users_name_check')"
        )
        .trim(),
        "|||0|0"
    );
}

#[test]
fn drift_repair_puts_back_check_and_foreign_key_constraints() {
    let w = World::new();
    w.edit("neo.toml", |s| {
        s.replace(
            "depends_on = [\"platform_common\"]",
            "depends_on = [\"platform_common\"]\ndrift = \"repair\"",
        )
    });
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    // A foreign key dropped, and a check constraint replaced by a weaker one of the same name.
    w.us.psql(
        "neo_us",
        "ALTER TABLE tenant_globex.projects DROP CONSTRAINT projects_owner_id_fkey;
         ALTER TABLE tenant_globex.projects DROP CONSTRAINT projects_name_not_blank_check,
             ADD CONSTRAINT projects_name_not_blank_check CHECK (name <> '');",
    );
    let run = w.neo("plan", &["--detailed-exitcode", "--show-sql"]);
    run.expect_code(2);
    let out = &run.stdout;
    assert_eq!(
        diff_of(out, "  ~ drift tenant globex: tenant_template V5 (schema tenant_globex, repaired)"),
        [
            "-constraint projects.projects_name_not_blank_check CHECK ((btrim(name) <> ''::text))",
            "-constraint projects.projects_owner_id_fkey FOREIGN KEY (owner_id) REFERENCES users(id) ON DELETE CASCADE",
            "+constraint projects.projects_name_not_blank_check CHECK ((name <> ''::text))",
        ],
        "{out}"
    );
    // The changed constraint is dropped and created again; the missing one is created.
    let statements = [
        "| ALTER TABLE projects DROP CONSTRAINT projects_name_not_blank_check;",
        "| ALTER TABLE projects ADD CONSTRAINT projects_name_not_blank_check CHECK ((btrim(name) <> ''::text));",
        "| ALTER TABLE projects ADD CONSTRAINT projects_owner_id_fkey FOREIGN KEY (owner_id) REFERENCES users(id) ON DELETE CASCADE;",
    ];
    let at: Vec<Option<usize>> = statements.iter().map(|s| out.find(s)).collect();
    assert!(at.iter().all(Option::is_some) && at.is_sorted(), "{out}");
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
    assert_eq!(
        w.us.psql(
            "neo_us",
            "SELECT string_agg(pg_get_constraintdef(oid), ' / ' ORDER BY conname)
             FROM pg_constraint
             WHERE conrelid = 'tenant_globex.projects'::regclass AND contype IN ('c', 'f')
               AND conname IN ('projects_name_not_blank_check', 'projects_owner_id_fkey')"
        )
        .trim(),
        "CHECK ((btrim(name) <> ''::text)) / FOREIGN KEY (owner_id) REFERENCES tenant_globex.users(id) ON DELETE CASCADE"
    );
}

#[test]
fn drift_off_checks_nothing_and_drift_from_before_it_is_turned_on_is_found_after_one_apply() {
    let w = World::new();
    w.edit("neo.toml", |s| {
        s.replace(
            "depends_on = [\"platform_common\"]",
            "depends_on = [\"platform_common\"]\ndrift = \"off\"",
        )
        .replace(
            "scope = \"region\"          #",
            "drift = \"off\"\nscope = \"region\"          #",
        )
    });
    add_tenants(&w, &["d1", "d2"]);
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    break_things(&w);
    let off = w.neo("plan", &["--detailed-exitcode"]);
    off.expect_code(0);
    assert!(!off.stdout.contains("drift"), "{}", off.stdout);
    let cached = "SELECT count(*) FROM neo_reconcile.expected_shapes";
    assert_eq!(w.us.psql("neo_us", cached).trim(), "0");
    assert_eq!(w.eu.psql("neo_eu", cached).trim(), "0");
    // Turned on, the first plan only computes the expected shapes, one per set versions.
    w.edit("neo.toml", |s| s.replace("\ndrift = \"off\"", ""));
    let on = w.neo("plan", &["--detailed-exitcode"]);
    on.expect_code(2);
    assert_eq!(
        on.stdout.matches("+ compute_shape ").count(),
        5,
        "{}",
        on.stdout
    );
    assert!(!on.stdout.contains("! drift "), "{}", on.stdout);
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    // The next plan finds every change made while it was off.
    let after = w.neo("plan", &["--detailed-exitcode"]);
    after.expect_code(1);
    for header in [
        "  ! drift platform_common: platform_common V3 (schema platform_common, blocked)",
        "  ! drift tenant acme: tenant_template V6 (schema tenant_acme, blocked)",
        "  ! drift tenant d1: tenant_template V5 (schema tenant_d1, blocked)",
        "  ! drift tenant d2: tenant_template V5 (schema tenant_d2, blocked)",
        "  ! drift tenant globex: tenant_template V5 (schema tenant_globex, blocked)",
    ] {
        assert!(
            after.stdout.contains(header),
            "missing {header:?} in:\n{}",
            after.stdout
        );
    }
    assert_eq!(drift_count(&after.stdout), 5, "{}", after.stdout);
}

#[test]
fn a_migration_that_fails_only_in_the_scratch_schema_leaves_its_targets_unchecked_with_a_warning() {
    let w = World::new();
    w.neo("apply", &["--auto-approve"]).expect_code(0);
    // V7 runs in the tenants' schemas but refuses the scratch schema apply builds to compute
    // the expected shape (as a migration that cannot run in one transaction with the ones
    // before it would).
    w.write(
        "schemas/tenant_template/V7__notes.sql",
        "DO $$ BEGIN IF current_schema() LIKE 'neo_shape_%' THEN RAISE EXCEPTION 'not in a scratch schema'; END IF; END $$;\n\
         CREATE TABLE notes (id bigint PRIMARY KEY);\n",
    );
    w.edit("neo.toml", |s| s.replace("target = 5 ", "target = 7 "));
    w.edit("tenants/acme.toml", |s| {
        s.replace("tenant_template = 6\n", "")
    });
    let apply = w.neo("apply", &["--auto-approve"]);
    apply.expect_code(0);
    assert!(
        apply
            .stderr
            .contains("The expected shape cannot be computed")
            && apply.stderr.contains("not in a scratch schema"),
        "{}",
        apply.stderr
    );
    let failure = w.us.psql(
        "neo_us",
        "SELECT versions || ': ' || (failure LIKE '%not in a scratch schema%') FROM neo_reconcile.expected_shapes WHERE failure IS NOT NULL",
    );
    assert_eq!(failure.trim(), "tenant_template V7: true");
    // The failure is kept: the next plan has nothing to do and says why V7 is not checked.
    let plan = w.neo("plan", &["--detailed-exitcode"]);
    plan.expect_code(0);
    assert!(
        plan.stderr
            .contains("The expected shape of these versions could not be computed"),
        "{}",
        plan.stderr
    );
    // Unchecked: an out-of-band change at V7 is not reported.
    w.us.psql("neo_us", "DROP INDEX tenant_globex.projects_owner_id_idx");
    w.neo("plan", &["--detailed-exitcode"]).expect_code(0);
}
