//! Migration files read by PostgreSQL's own parser (the `pg_query` crate embeds it).
//!
//! [`check`] parses one file and returns what apply runs and what `validate` reports:
//!
//! - a syntax error, at the position where the parser stopped, as PostgreSQL would report it
//!   when the file runs (the first one of the file: what follows it cannot be split reliably);
//! - transaction control: one `BEGIN; ... COMMIT;` pair around the whole file (the
//!   golang-migrate and dbmate convention) is accepted and left out of what runs, since
//!   neo-reconcile runs each migration in a transaction of its own with its history row; any
//!   other `BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `PREPARE TRANSACTION`, ... is an error,
//!   and so is any transaction control in a `-- neo:no-transaction` file;
//! - statements that PostgreSQL refuses inside a transaction block (`CREATE INDEX
//!   CONCURRENTLY`, `VACUUM`, ...) in a file without `-- neo:no-transaction`, and `LOCK`, which
//!   it refuses outside one, in a file with it;
//! - names that name a schema (see [`super::sql_names`]).
//!
//! The statements of the file come from the parser too, so that a `-- neo:no-transaction`
//! file runs one statement at a time exactly as PostgreSQL delimits them (a SQL-standard
//! function body `BEGIN ATOMIC ... END` is one statement, whatever semicolons it holds).
//!
//! pg_query reports a parse error's message but not its position, so the position is found by
//! parsing prefixes of the file: the parser reads left to right, so the shortest prefix that
//! fails with an error other than "at end of input" ends with the token where it stopped. A
//! bisection over the tokens takes a dozen parses for a large file, and only a file with an
//! error pays for it.

use pg_query::protobuf::{
    self, AlterTableType, DiscardMode, ReindexObjectType, ScanToken, Token, TransactionStmtKind,
};
use pg_query::NodeEnum;

use super::diagnostic::Severity;
use super::sql_names;

/// What the parser says about one migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checked {
    /// The SQL apply runs: the file, without an accepted wrapping `BEGIN`/`COMMIT` pair.
    pub sql: String,
    /// The statements of [`Checked::sql`] in order, as the parser delimits them, each trimmed
    /// and without its semicolon (comments before a statement belong to it).
    pub statements: Vec<String>,
    /// Errors and warnings, in the order of the file.
    pub findings: Vec<Finding>,
    /// The file adds a value to an enum type (`ALTER TYPE ... ADD VALUE`): PostgreSQL lets a
    /// transaction use the new value only after the one that added it committed.
    pub adds_enum_value: bool,
}

/// One problem in a migration file, at a byte offset of the file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Finding {
    pub offset: usize,
    pub severity: Severity,
    pub message: String,
}

impl Finding {
    pub(crate) fn error(offset: usize, message: impl Into<String>) -> Finding {
        Finding {
            offset,
            severity: Severity::Error,
            message: message.into(),
        }
    }
}

/// The file as the checks see it: its text and its tokens (comments included).
pub(crate) struct Source<'a> {
    pub text: &'a str,
    pub tokens: &'a [ScanToken],
}

impl Source<'_> {
    /// The text of a token.
    pub(crate) fn token_text(&self, t: &ScanToken) -> &str {
        self.text
            .get(t.start as usize..t.end as usize)
            .unwrap_or("")
    }

    /// The first token that is not a comment at or after `offset`, if any before `limit`.
    fn first_code_token(&self, offset: usize, limit: usize) -> Option<&ScanToken> {
        let from = self.tokens.partition_point(|t| (t.start as usize) < offset);
        self.tokens[from..]
            .iter()
            .take_while(|t| (t.start as usize) < limit)
            .find(|t| !is_comment(t))
    }
}

/// One statement of the file.
struct Stmt {
    node: Option<NodeEnum>,
    /// Where the statement's text begins: after the previous semicolon, so it may begin with
    /// white space and comments.
    from: usize,
    /// Its first token.
    start: usize,
    /// The end of its text, without the semicolon.
    end: usize,
    /// The end of its semicolon, or `end` when it has none.
    through: usize,
}

impl Stmt {
    fn transaction(&self) -> Option<&protobuf::TransactionStmt> {
        match &self.node {
            Some(NodeEnum::TransactionStmt(t)) => Some(t),
            _ => None,
        }
    }
}

/// What a `-- neo:no-transaction` file is told to do.
const NO_TRANSACTION_HINT: &str = "move it to a migration of its own whose first line is \
    `-- neo:no-transaction`, which runs outside a transaction, one statement at a time; write \
    it to be safe to run again after an interruption (IF NOT EXISTS; for CREATE INDEX \
    CONCURRENTLY, a DROP INDEX CONCURRENTLY IF EXISTS first, since an interrupted build \
    leaves an invalid index that IF NOT EXISTS would accept)";

/// Parses a migration file and checks it. `no_transaction`: its first line is
/// `-- neo:no-transaction`.
pub(crate) fn check(text: &str, no_transaction: bool) -> Checked {
    let mut findings = Vec::new();
    // A file the scanner rejects (an unterminated quoted string or comment) has no tokens;
    // the parser then reports the same error, located from its message.
    let tokens = pg_query::scan_tokens(text).unwrap_or_default();
    let src = Source {
        text,
        tokens: &tokens,
    };
    let (raw, complete) = match pg_query::parse(text, 0) {
        Ok(result) => (result.protobuf.stmts, true),
        Err(pg_query::Error::Parse(message)) => {
            let offset = error_offset(&src, &message);
            findings.push(Finding::error(
                offset,
                format!(
                    "{message}: PostgreSQL's parser rejects this statement; fix it (nothing is \
                     applied while a migration does not parse)"
                ),
            ));
            (statements_before(&src, offset), false)
        }
        Err(e) => {
            findings.push(Finding::error(
                0,
                format!("PostgreSQL's parser cannot read the file: {e}"),
            ));
            (Vec::new(), false)
        }
    };
    let stmts = statements(&src, raw);

    let wrapper = wrapping_pair(&stmts, complete && !no_transaction);
    for (i, stmt) in stmts.iter().enumerate() {
        if wrapper.is_some_and(|(b, c)| i == b || i == c) {
            continue;
        }
        let Some(node) = &stmt.node else { continue };
        if let Some(t) = stmt.transaction() {
            let label = transaction_label(&src, stmt, t);
            // Without the file's end (after a syntax error), a first BEGIN may yet be the
            // accepted wrapper: it is not reported.
            if !complete && i == 0 && is_plain_begin(t) {
                continue;
            }
            findings.push(Finding::error(
                stmt.start,
                transaction_message(&label, no_transaction),
            ));
            continue;
        }
        if no_transaction {
            if matches!(node, NodeEnum::LockStmt(_)) {
                findings.push(Finding::error(
                    stmt.start,
                    "LOCK can only be used in a transaction block, and a `-- neo:no-transaction` \
                     migration runs each statement on its own: remove the LOCK, or the \
                     `-- neo:no-transaction` line",
                ));
            }
        } else if let Some(label) = needs_no_transaction(node) {
            findings.push(Finding::error(
                stmt.start,
                format!(
                    "{label} cannot run inside a transaction block, and this migration runs in \
                     one: {NO_TRANSACTION_HINT}"
                ),
            ));
        }
        sql_names::check(node, &src, stmt.start, stmt.end, &mut findings);
    }

    let kept: Vec<&Stmt> = stmts
        .iter()
        .enumerate()
        .filter(|(i, _)| !wrapper.is_some_and(|(b, c)| *i == b || *i == c))
        .map(|(_, s)| s)
        .collect();
    if complete && kept.is_empty() {
        let what = if wrapper.is_some() {
            "nothing between BEGIN and COMMIT"
        } else {
            "no SQL statement, only comments"
        };
        findings.push(Finding::error(
            0,
            format!("{what}: a migration must contain SQL; remove the file if it is not needed"),
        ));
    }
    let adds_enum_value = kept.iter().any(|s| adds_enum_value(s));
    let sql = match wrapper {
        Some((b, c)) => cut(text, &[&stmts[b], &stmts[c]]),
        None => text.to_string(),
    };
    // The statements of what runs: offsets into `sql` differ from the file's once the
    // wrapper is cut, so they are taken from the file, which holds the same text.
    let statements = kept
        .iter()
        .map(|s| text[s.from..s.end].trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    findings.sort();
    findings.dedup();
    Checked {
        sql,
        statements,
        findings,
        adds_enum_value,
    }
}

/// `ALTER TYPE ... ADD VALUE`.
fn adds_enum_value(stmt: &Stmt) -> bool {
    matches!(&stmt.node, Some(NodeEnum::AlterEnumStmt(a)) if !a.new_val.is_empty())
}

fn is_comment(t: &ScanToken) -> bool {
    t.token == Token::SqlComment as i32 || t.token == Token::CComment as i32
}

/// The parser's statements with their extent in the file.
fn statements(src: &Source<'_>, raw: Vec<protobuf::RawStmt>) -> Vec<Stmt> {
    raw.into_iter()
        .map(|r| {
            let from = r.stmt_location.max(0) as usize;
            // A length of 0 means "to the end of the text".
            let end = if r.stmt_len > 0 {
                from + r.stmt_len as usize
            } else {
                src.text.len()
            };
            let start = src
                .first_code_token(from, end)
                .map_or(from, |t| t.start as usize);
            let through = src
                .first_code_token(end, src.text.len())
                .filter(|t| t.token == Token::Ascii59 as i32)
                .map_or(end, |t| t.end as usize);
            Stmt {
                node: r.stmt.and_then(|n| n.node),
                from,
                start,
                end,
                through,
            }
        })
        .collect()
}

/// The statements before a syntax error at `offset`: the longest prefix of the file that
/// ends with one of the last few semicolons before the error and parses.
fn statements_before(src: &Source<'_>, offset: usize) -> Vec<protobuf::RawStmt> {
    src.tokens
        .iter()
        .rev()
        .filter(|t| t.token == Token::Ascii59 as i32 && (t.end as usize) <= offset)
        .take(3)
        .find_map(|t| pg_query::parse(&src.text[..t.end as usize], 0).ok())
        .map(|r| r.protobuf.stmts)
        .unwrap_or_default()
}

/// Where the parser stopped with `message` (see the module documentation).
fn error_offset(src: &Source<'_>, message: &str) -> usize {
    let code: Vec<&ScanToken> = src.tokens.iter().filter(|t| !is_comment(t)).collect();
    if message.ends_with("at end of input") {
        return code.last().map_or(src.text.len(), |t| t.end as usize);
    }
    if !code.is_empty() {
        let fails_before_end =
            |k: usize| match pg_query::parse(&src.text[..code[k - 1].end as usize], 0) {
                Err(pg_query::Error::Parse(m)) => !m.ends_with("at end of input"),
                _ => false,
            };
        let (mut lo, mut hi) = (1, code.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if fails_before_end(mid) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        return code[lo - 1].start as usize;
    }
    // The scanner failed: its message quotes the text from where it stopped ("unterminated
    // quoted string at or near "'abc..."), to the end of the file for an unterminated one.
    let near = message
        .split_once("at or near \"")
        .and_then(|(_, rest)| rest.strip_suffix('"'));
    match near {
        Some(near) if src.text.ends_with(near) => src.text.len() - near.len(),
        Some(near) => src.text.find(near).unwrap_or(0),
        None => 0,
    }
}

/// The indices of the accepted wrapping pair: the first statement a plain `BEGIN` or
/// `START TRANSACTION`, the last a plain `COMMIT` or `END`. Only for a complete file that runs
/// in a transaction.
fn wrapping_pair(stmts: &[Stmt], allowed: bool) -> Option<(usize, usize)> {
    let (first, last) = (stmts.first()?, stmts.last()?);
    let last_index = stmts.len() - 1;
    (allowed
        && last_index > 0
        && first.transaction().is_some_and(is_plain_begin)
        && last
            .transaction()
            .is_some_and(|t| t.kind == TransactionStmtKind::TransStmtCommit as i32 && !t.chain))
    .then_some((0, last_index))
}

/// `BEGIN` or `START TRANSACTION` without options (an isolation level or `READ ONLY` would be
/// lost if the statement were left out).
fn is_plain_begin(t: &protobuf::TransactionStmt) -> bool {
    (t.kind == TransactionStmtKind::TransStmtBegin as i32
        || t.kind == TransactionStmtKind::TransStmtStart as i32)
        && t.options.is_empty()
}

/// How a transaction statement is named in a message: as written for the ones with several
/// spellings (`END` is `COMMIT`, `ABORT` is `ROLLBACK`).
fn transaction_label(src: &Source<'_>, stmt: &Stmt, t: &protobuf::TransactionStmt) -> String {
    use TransactionStmtKind as K;
    let first_word = || {
        src.first_code_token(stmt.start, stmt.end)
            .map(|t| src.token_text(t).to_ascii_uppercase())
            .unwrap_or_default()
    };
    match K::try_from(t.kind).unwrap_or(K::Undefined) {
        K::TransStmtBegin | K::TransStmtCommit | K::TransStmtRollback => first_word(),
        K::TransStmtStart => "START TRANSACTION".into(),
        K::TransStmtSavepoint => "SAVEPOINT".into(),
        K::TransStmtRelease => "RELEASE SAVEPOINT".into(),
        K::TransStmtRollbackTo => "ROLLBACK TO SAVEPOINT".into(),
        K::TransStmtPrepare => "PREPARE TRANSACTION".into(),
        K::TransStmtCommitPrepared => "COMMIT PREPARED".into(),
        K::TransStmtRollbackPrepared => "ROLLBACK PREPARED".into(),
        K::Undefined => "transaction control".into(),
    }
}

fn transaction_message(label: &str, no_transaction: bool) -> String {
    if no_transaction {
        format!(
            "{label} in a `-- neo:no-transaction` migration: remove it; such a migration runs \
             outside any transaction, one statement at a time, each kept as soon as it \
             completes, and its history row is written once all of them succeeded"
        )
    } else {
        format!(
            "{label} in a migration: remove it; neo-reconcile runs each migration in a \
             transaction of its own, together with its history row (one BEGIN; ... COMMIT; \
             pair around the whole file is accepted and left out, nothing else). A statement \
             that cannot run in a transaction goes in a migration of its own whose first line \
             is `-- neo:no-transaction`"
        )
    }
}

/// The statements PostgreSQL (15) refuses inside a transaction block ("... cannot run inside
/// a transaction block"), named as in its error. `ALTER TYPE ... ADD VALUE` (since 12) and
/// `REFRESH MATERIALIZED VIEW CONCURRENTLY` are accepted in one, so they are not here.
fn needs_no_transaction(node: &NodeEnum) -> Option<&'static str> {
    Some(match node {
        NodeEnum::IndexStmt(s) if s.concurrent => "CREATE INDEX CONCURRENTLY",
        NodeEnum::DropStmt(s) if s.concurrent => "DROP INDEX CONCURRENTLY",
        NodeEnum::ReindexStmt(s) => {
            // `CONCURRENTLY` is an option, which may be given as false.
            let concurrently = named(&s.params, "concurrently").is_some_and(option_is_true);
            match ReindexObjectType::try_from(s.kind) {
                _ if concurrently => "REINDEX CONCURRENTLY",
                Ok(ReindexObjectType::ReindexObjectSchema) => "REINDEX SCHEMA",
                Ok(ReindexObjectType::ReindexObjectSystem) => "REINDEX SYSTEM",
                Ok(ReindexObjectType::ReindexObjectDatabase) => "REINDEX DATABASE",
                _ => return None,
            }
        }
        NodeEnum::VacuumStmt(s) if s.is_vacuumcmd => "VACUUM",
        NodeEnum::ClusterStmt(s) if s.relation.is_none() => "CLUSTER without a table name",
        NodeEnum::CreatedbStmt(_) => "CREATE DATABASE",
        NodeEnum::DropdbStmt(_) => "DROP DATABASE",
        NodeEnum::AlterDatabaseStmt(s) if named(&s.options, "tablespace").is_some() => {
            "ALTER DATABASE ... SET TABLESPACE"
        }
        NodeEnum::CreateTableSpaceStmt(_) => "CREATE TABLESPACE",
        NodeEnum::DropTableSpaceStmt(_) => "DROP TABLESPACE",
        NodeEnum::AlterSystemStmt(_) => "ALTER SYSTEM",
        NodeEnum::DiscardStmt(s) if s.target == DiscardMode::DiscardAll as i32 => "DISCARD ALL",
        NodeEnum::AlterTableStmt(s)
            if s.cmds.iter().any(|c| match &c.node {
                Some(NodeEnum::AlterTableCmd(c)) => {
                    c.subtype == AlterTableType::AtDetachPartition as i32
                        && matches!(c.def.as_deref().and_then(|d| d.node.as_ref()),
                            Some(NodeEnum::PartitionCmd(p)) if p.concurrent)
                }
                _ => false,
            }) =>
        {
            "ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY"
        }
        _ => return None,
    })
}

/// The option `name` of a statement, if it has it.
fn named<'a>(options: &'a [protobuf::Node], name: &str) -> Option<&'a protobuf::DefElem> {
    options.iter().find_map(|o| match &o.node {
        Some(NodeEnum::DefElem(d)) if d.defname == name => Some(&**d),
        _ => None,
    })
}

/// Whether a boolean option of a utility statement (`REINDEX (CONCURRENTLY false)`) is on:
/// without a value it is; the parser keeps `false`, `off`, `no` or `0` as written.
fn option_is_true(d: &protobuf::DefElem) -> bool {
    match d.arg.as_deref().and_then(|a| a.node.as_ref()) {
        None => true,
        Some(NodeEnum::Boolean(b)) => b.boolval,
        Some(NodeEnum::Integer(i)) => i.ival != 0,
        Some(NodeEnum::String(s)) => !["false", "off", "no", "0"]
            .iter()
            .any(|f| s.sval.eq_ignore_ascii_case(f)),
        Some(_) => true,
    }
}

/// The file without the given statements (each with its semicolon, and with its line when
/// nothing else is on it).
fn cut(text: &str, stmts: &[&Stmt]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for s in stmts {
        let line_start = text[..s.start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[s.through..]
            .find('\n')
            .map_or(text.len(), |i| s.through + i + 1);
        let (from, to) = if text[line_start..s.start].trim().is_empty()
            && text[s.through..line_end].trim().is_empty()
        {
            (line_start, line_end)
        } else {
            (s.start, s.through)
        };
        out.push_str(&text[at..from.max(at)]);
        at = to.max(at);
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::desired::diagnostic::SourceText;
    use expect_test::{expect, Expect};
    use std::path::Path;

    /// Checks `sql` (a `-- neo:no-transaction` file when its first line says so) and renders
    /// every finding as `line:column severity: message up to its first colon`, one a line.
    fn check_findings(sql: &str, expected: Expect) {
        let checked = super::check(sql, sql.starts_with("-- neo:no-transaction"));
        expected.assert_eq(&render(sql, &checked.findings));
    }

    pub(crate) fn render(sql: &str, findings: &[Finding]) -> String {
        let src = SourceText::new(Path::new("V1__t.sql"), sql.to_string());
        findings
            .iter()
            .map(|f| {
                let (line, column) = src.line_col(f.offset);
                let short = f.message.split(": ").next().unwrap_or("");
                format!("{line}:{column} {}: {short}\n", f.severity)
            })
            .collect()
    }

    #[test]
    fn syntax_errors_are_located_where_the_parser_stops() {
        check_findings(
            "CREATE TABLE t (id int);\nCREATE TABLEE u (id int);\n",
            expect![[r#"
            2:8 error: syntax error at or near "TABLEE"
        "#]],
        );
        check_findings(
            "-- a comment\nSELECT 1;\n\nSELECT (1;\n",
            expect![[r#"
            4:10 error: syntax error at or near ";"
        "#]],
        );
        check_findings(
            "CREATE TABLE t (id int",
            expect![[r#"
            1:23 error: syntax error at end of input
        "#]],
        );
        check_findings(
            "SELECT 1;\nSELECT 'abc;\n",
            expect![[r#"
            2:8 error: unterminated quoted string at or near "'abc;
            "
        "#]],
        );
        // A repeated token: the position is the one that fails, not the first of its kind.
        check_findings(
            "SELECT a, b FROM t;\nSELECT a, , b FROM t;\n",
            expect![[r#"
            2:11 error: syntax error at or near ","
        "#]],
        );
        // Statements before the error are still checked.
        check_findings(
            "COMMIT;\nSELECT 1;\nSELEC 2;\n",
            expect![[r#"
            1:1 error: COMMIT in a migration
            3:1 error: syntax error at or near "SELEC"
        "#]],
        );
    }

    #[test]
    fn one_wrapping_pair_is_accepted_and_left_out() {
        let file = "-- V1: two tables.\nBEGIN;\n\nCREATE TABLE a (id int);\nCREATE TABLE b (id int);\n\nCOMMIT;\n";
        let checked = super::check(file, false);
        assert_eq!(checked.findings, vec![]);
        assert_eq!(
            checked.sql,
            "-- V1: two tables.\n\nCREATE TABLE a (id int);\nCREATE TABLE b (id int);\n\n"
        );
        assert_eq!(
            checked.statements,
            vec!["CREATE TABLE a (id int)", "CREATE TABLE b (id int)"]
        );
        // Other spellings, on one line, without a final semicolon.
        let checked = super::check("START TRANSACTION; CREATE TABLE a (); END", false);
        assert_eq!(checked.findings, vec![]);
        assert_eq!(checked.sql, " CREATE TABLE a (); ");
        let checked = super::check(
            "begin work;\ncreate table a ();\ncommit transaction;",
            false,
        );
        assert_eq!(
            (checked.findings, checked.sql.as_str()),
            (vec![], "create table a ();\n")
        );
    }

    #[test]
    fn other_transaction_control_is_an_error_at_its_statement() {
        check_findings(
            "BEGIN;\nCREATE TABLE a ();\nCOMMIT;\nBEGIN;\nCREATE TABLE b ();\nCOMMIT;\n",
            expect![[r#"
                3:1 error: COMMIT in a migration
                4:1 error: BEGIN in a migration
            "#]],
        );
        check_findings(
            "CREATE TABLE a ();\nCOMMIT;\nCREATE TABLE b ();\n",
            expect![[r#"
            2:1 error: COMMIT in a migration
        "#]],
        );
        check_findings(
            "BEGIN;\nCREATE TABLE a ();\n",
            expect![[r#"
            1:1 error: BEGIN in a migration
        "#]],
        );
        check_findings(
            "CREATE TABLE a ();\nCOMMIT;\n",
            expect![[r#"
            2:1 error: COMMIT in a migration
        "#]],
        );
        check_findings(
            "BEGIN;\nCREATE TABLE a ();\nROLLBACK;\n",
            expect![[r#"
            1:1 error: BEGIN in a migration
            3:1 error: ROLLBACK in a migration
        "#]],
        );
        check_findings(
            "BEGIN ISOLATION LEVEL SERIALIZABLE;\nCREATE TABLE a ();\nCOMMIT AND CHAIN;\n",
            expect![[r#"
                1:1 error: BEGIN in a migration
                3:1 error: COMMIT in a migration
            "#]],
        );
        check_findings(
            "BEGIN;\nSAVEPOINT s;\nCREATE TABLE a ();\nRELEASE SAVEPOINT s;\nROLLBACK TO SAVEPOINT s;\nPREPARE TRANSACTION 'x';\nCOMMIT PREPARED 'x';\nROLLBACK PREPARED 'x';\nABORT;\nEND;\n",
            expect![[r#"
                2:1 error: SAVEPOINT in a migration
                4:1 error: RELEASE SAVEPOINT in a migration
                5:1 error: ROLLBACK TO SAVEPOINT in a migration
                6:1 error: PREPARE TRANSACTION in a migration
                7:1 error: COMMIT PREPARED in a migration
                8:1 error: ROLLBACK PREPARED in a migration
                9:1 error: ABORT in a migration
            "#]],
        );
        check_findings(
            "-- neo:no-transaction\nBEGIN;\nCREATE INDEX CONCURRENTLY i ON t (a);\nCOMMIT;\n",
            expect![[r#"
                2:1 error: BEGIN in a `-- neo:no-transaction` migration
                4:1 error: COMMIT in a `-- neo:no-transaction` migration
            "#]],
        );
        check_findings(
            "BEGIN;\nCOMMIT;\n",
            expect![[r#"
            1:1 error: nothing between BEGIN and COMMIT
        "#]],
        );
        check_findings(
            "/* nothing */;\n",
            expect![[r#"
            1:1 error: no SQL statement, only comments
        "#]],
        );
    }

    #[test]
    fn statements_that_cannot_run_in_a_transaction_need_the_marker() {
        let cases = [
            (
                "CREATE INDEX CONCURRENTLY i ON t (a)",
                Some("CREATE INDEX CONCURRENTLY"),
            ),
            (
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)",
                Some("CREATE INDEX CONCURRENTLY"),
            ),
            (
                "DROP INDEX CONCURRENTLY IF EXISTS i",
                Some("DROP INDEX CONCURRENTLY"),
            ),
            ("REINDEX TABLE CONCURRENTLY t", Some("REINDEX CONCURRENTLY")),
            (
                "REINDEX (CONCURRENTLY) INDEX i",
                Some("REINDEX CONCURRENTLY"),
            ),
            ("REINDEX (CONCURRENTLY false) INDEX i", None),
            ("REINDEX SCHEMA s", Some("REINDEX SCHEMA")),
            ("REINDEX TABLE t", None),
            ("VACUUM t", Some("VACUUM")),
            ("VACUUM (ANALYZE) t", Some("VACUUM")),
            ("ANALYZE t", None),
            ("CLUSTER", Some("CLUSTER without a table name")),
            ("CLUSTER t USING i", None),
            ("CREATE DATABASE d", Some("CREATE DATABASE")),
            ("DROP DATABASE IF EXISTS d", Some("DROP DATABASE")),
            (
                "ALTER DATABASE d SET TABLESPACE x",
                Some("ALTER DATABASE ... SET TABLESPACE"),
            ),
            ("ALTER DATABASE d SET work_mem = '1MB'", None),
            (
                "CREATE TABLESPACE x LOCATION '/x'",
                Some("CREATE TABLESPACE"),
            ),
            ("DROP TABLESPACE x", Some("DROP TABLESPACE")),
            ("ALTER SYSTEM SET work_mem = '1MB'", Some("ALTER SYSTEM")),
            ("DISCARD ALL", Some("DISCARD ALL")),
            ("DISCARD PLANS", None),
            (
                "ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY",
                Some("ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY"),
            ),
            ("ALTER TABLE p DETACH PARTITION p1", None),
            ("ALTER TYPE e ADD VALUE 'b'", None),
            ("REFRESH MATERIALIZED VIEW CONCURRENTLY m", None),
        ];
        for (sql, label) in cases {
            // Only the findings of this rule (`REINDEX SCHEMA s` also names a schema).
            let rule = |f: &&Finding| f.message.contains("transaction block");
            let checked = super::check(&format!("CREATE TABLE a ();\n{sql};\n"), false);
            let got: Vec<&str> = checked
                .findings
                .iter()
                .filter(rule)
                .map(|f| f.message.as_str())
                .collect();
            match label {
                Some(label) => {
                    assert_eq!(got.len(), 1, "{sql}: {got:?}");
                    assert!(
                        got[0]
                            .starts_with(&format!("{label} cannot run inside a transaction block")),
                        "{sql}: {got:?}"
                    );
                    assert_eq!(
                        checked.findings.iter().find(rule).unwrap().offset,
                        19,
                        "{sql}"
                    );
                }
                None => assert!(got.is_empty(), "{sql}: {got:?}"),
            }
            // With the marker, the same statement is accepted.
            let marked = super::check(&format!("-- neo:no-transaction\n{sql};\n"), true);
            assert_eq!(marked.findings.iter().filter(rule).count(), 0, "{sql}");
        }
        check_findings(
            "-- neo:no-transaction\nLOCK TABLE t;\n",
            expect![[r#"
            2:1 error: LOCK can only be used in a transaction block, and a `-- neo:no-transaction` migration runs each statement on its own
        "#]],
        );
    }

    #[test]
    fn statements_are_split_by_the_parser() {
        let file = "-- neo:no-transaction\n-- a comment; with a semicolon\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a) WHERE b <> ';';\n\
            CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 1;\n  SELECT 2;\nEND;\n\
            DO $body$ BEGIN PERFORM 1; END $body$;\nSELECT $$a;b$$, E'it\\'s;', \"we;ird\" FROM t\n-- trailing comment;\n";
        let checked = super::check(file, true);
        assert_eq!(checked.findings, vec![]);
        assert_eq!(checked.sql, file);
        assert_eq!(
            checked.statements,
            vec![
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a) WHERE b <> ';'",
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 1;\n  SELECT 2;\nEND",
                "DO $body$ BEGIN PERFORM 1; END $body$",
                "SELECT $$a;b$$, E'it\\'s;', \"we;ird\" FROM t\n-- trailing comment;",
            ]
        );
    }
}
