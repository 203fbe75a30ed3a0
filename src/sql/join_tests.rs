//! Table-driven tests of [`super::join_transactions`]: which `BEGIN`s and `COMMIT`s stay when a
//! target's pieces are joined into as few transactions as its no-transaction migrations allow.

use super::actions::{join_transactions, MigrationRun, Program};
use super::statement::{Statement, Step};

/// A program from a compact description: `L` a lifecycle action (its setup in a
/// transaction), then per migration `T` (transactional), `E` (transactional, adds an enum
/// value), `U` (an undo file: a transaction of its own) or `N` (`-- neo:no-transaction`).
fn program(spec: &str) -> Program {
    let mut setup = Vec::new();
    let mut migrations = Vec::new();
    for (i, c) in spec.chars().enumerate() {
        let wrapped = |name: &str| {
            vec![
                Step::Begin,
                Step::Exec(Statement::fixed(name.to_string())),
                Step::Commit,
            ]
        };
        match c {
            'L' => setup = wrapped("L"),
            'T' | 'E' | 'U' | 'N' => migrations.push(MigrationRun {
                version: i as u32,
                file: format!("V{i}"),
                no_transaction: c == 'N',
                schema: "s".into(),
                set: "t".into(),
                checksum: String::new(),
                ends_transaction: c == 'E' || c == 'U',
                undo: c == 'U',
                steps: if c != 'N' {
                    wrapped(&format!("V{i}"))
                } else {
                    vec![Step::Script {
                        file: format!("V{i}"),
                        sql: format!("V{i}"),
                    }]
                },
                on_failure: Vec::new(),
            }),
            other => panic!("unknown piece {other}"),
        }
    }
    Program { setup, migrations }
}

/// Joins the programs described by `specs` (one per action) and renders every piece's steps:
/// `[` for a `BEGIN`, `]` for a `COMMIT`, the piece's name otherwise.
fn check(specs: &[&str], expected: &str) {
    let mut programs: Vec<Program> = specs.iter().map(|s| program(s)).collect();
    join_transactions(&mut programs.iter_mut().collect::<Vec<_>>());
    let mut out = Vec::new();
    for p in &programs {
        let pieces = std::iter::once(&p.setup)
            .filter(|s| !s.is_empty())
            .chain(p.migrations.iter().map(|m| &m.steps));
        for steps in pieces {
            out.push(
                steps
                    .iter()
                    .map(|s| match s {
                        Step::Begin => "[".to_string(),
                        Step::Commit => "]".to_string(),
                        Step::Exec(s) => s.sql.clone(),
                        Step::Script { sql, .. } => format!("({sql})"),
                        Step::Note(_) => String::new(),
                    })
                    .collect::<String>(),
            );
        }
    }
    assert_eq!(out.join(" "), expected, "specs {specs:?}");
}

#[test]
fn join_transactions_cases() {
    // One piece: unchanged.
    check(&["L"], "[L]");
    check(&["T"], "[V0]");
    // A new tenant and its migrations: one transaction.
    check(&["L", "TTT"], "[L V0 V1 V2]");
    // A no-transaction migration splits the group where it stands.
    check(&["L", "TTNTT"], "[L V0 V1] (V2) [V3 V4]");
    check(&["NT"], "(V0) [V1]");
    check(&["TN"], "[V0] (V1)");
    check(&["NN"], "(V0) (V1)");
    // Several actions of one tenant (a lifecycle action, two sets).
    check(&["L", "TT", "T"], "[L V0 V1 V0]");
    check(&["L", "TN", "TT"], "[L V0] (V1) [V0 V1]");
    // A migration adding an enum value commits before the next piece may use the value.
    check(&["L", "TETT"], "[L V0 V1] [V2 V3]");
    check(&["E", "T"], "[V0] [V0]");
    check(&["TE"], "[V0 V1]");
    // An undo file keeps a transaction of its own, so that a failed undo leaves the target at
    // the last good version.
    check(&["UU"], "[V0] [V1]");
    check(&["L", "UU", "T"], "[L] [V0] [V1] [V0]");
    check(&["T", "U"], "[V0] [V0]");
    // Nothing to join.
    check(&[], "");
    check(&[""], "");
}

/// Two migrations joined in one transaction: the first one's history row and the second
/// one's session settings become one statement, the settings' parameters renumbered after the
/// row's, and the second piece starts with its file.
#[test]
fn a_history_row_and_the_next_migrations_settings_are_one_statement() {
    use super::statement::Value;
    let piece = |v: u32| {
        MigrationRun {
        version: v,
        file: format!("V{v}"),
        no_transaction: false,
        schema: "s".into(),
        set: "t".into(),
        checksum: String::new(),
        ends_transaction: false,
        undo: false,
        steps: vec![
            Step::Begin,
            Step::Exec(Statement::with(
                "SELECT set_config('search_path', $1, true), set_config('role', $2, true)",
                vec![Value::Text("s".into()), Value::Text(format!("o{v}"))],
            )),
            Step::Script {
                file: format!("V{v}"),
                sql: format!("V{v}"),
            },
            Step::Exec(Statement::with(
                "INSERT INTO neo_reconcile.schema_history (version, description) VALUES ($1::int, $2)",
                vec![Value::Int(v.into()), Value::Text(format!("'$9' d{v}"))],
            )),
            Step::Commit,
        ],
        on_failure: Vec::new(),
    }
    };
    let mut program = Program {
        setup: Vec::new(),
        migrations: vec![piece(1), piece(2)],
    };
    join_transactions(&mut [&mut program]);
    let render = |steps: &[Step]| {
        steps
            .iter()
            .map(|s| match s {
                Step::Begin => "BEGIN".to_string(),
                Step::Commit => "COMMIT".to_string(),
                Step::Exec(s) => format!("{} {:?}", s.sql, s.params),
                Step::Script { sql, .. } => format!("script {sql}"),
                Step::Note(n) => n.clone(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let [first, second] = &program.migrations[..] else {
        unreachable!()
    };
    expect_test::expect![[r#"
        BEGIN
        SELECT set_config('search_path', $1, true), set_config('role', $2, true) [Text("s"), Text("o1")]
        script V1
        WITH done AS (INSERT INTO neo_reconcile.schema_history (version, description) VALUES ($1::int, $2)) SELECT set_config('search_path', $3, true), set_config('role', $4, true) [Int(1), Text("'$9' d1"), Text("s"), Text("o2")]"#]]
    .assert_eq(&render(&first.steps));
    expect_test::expect![[r#"
        script V2
        INSERT INTO neo_reconcile.schema_history (version, description) VALUES ($1::int, $2) [Int(2), Text("'$9' d2")]
        COMMIT"#]]
    .assert_eq(&render(&second.steps));
}
