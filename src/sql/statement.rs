//! The vocabulary of what apply sends: a [`Statement`] (SQL text and the values bound to its
//! parameters), the [`Step`]s of a program, [`ident`] (the one way a name enters SQL text),
//! and how `plan --show-sql` renders them.

use std::fmt::Write;

/// The advisory lock key of neo-reconcile's region lock ("neo-reco" in ASCII), held by one
/// writer per region database for the whole apply.
pub const REGION_LOCK_KEY: i64 = 0x6e65_6f2d_7265_636f;

/// The transaction-level advisory lock key that serializes registry writers.
pub const REGISTRY_LOCK_KEY: i64 = REGION_LOCK_KEY ^ 1;

/// Quotes an identifier for PostgreSQL. The only way a name enters SQL text.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One statement and the values bound to its `$1`, `$2`, ... parameters.
///
/// A statement without parameters is sent as a simple query (it may then hold several
/// statements separated by semicolons, all fixed text); one with parameters is sent with the
/// extended protocol, its values bound, never spliced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Value>,
}

impl Statement {
    /// Fixed text: no values.
    pub fn fixed(sql: impl Into<String>) -> Self {
        Statement {
            sql: sql.into(),
            params: Vec::new(),
        }
    }

    pub fn with(sql: impl Into<String>, params: Vec<Value>) -> Self {
        Statement {
            sql: sql.into(),
            params,
        }
    }

    /// `self`, a bookkeeping `INSERT`, and `then`, a `SELECT` of session settings, as one
    /// statement and so one round trip: `WITH done AS (<insert>) <select>`, with `then`'s
    /// parameters numbered after `self`'s. PostgreSQL runs a data-modifying `WITH` exactly
    /// once and to completion whether or not the main query reads it, and in the same snapshot
    /// and transaction. `None` for any other pair: only these two shapes are chained.
    pub fn chain(&self, then: &Statement) -> Option<Statement> {
        if !self.sql.starts_with("INSERT INTO neo_reconcile.")
            || !then.sql.starts_with("SELECT set_config(")
            || self.params.is_empty()
        {
            return None;
        }
        let sql = format!(
            "WITH done AS ({}) {}",
            self.sql,
            shift_placeholders(&then.sql, self.params.len())
        );
        let mut params = self.params.clone();
        params.extend(then.params.iter().cloned());
        Some(Statement { sql, params })
    }
}

/// `sql` with every `$n` placeholder outside string literals renumbered `$(n + by)`.
fn shift_placeholders(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c == '$' && !quoted && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut n = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                n.push(*d);
                chars.next();
            }
            let n: usize = n.parse().expect("digits");
            let _ = write!(out, "${}", n + by);
            continue;
        }
        out.push(c);
    }
    out
}

/// A value bound to a statement parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    /// Text that may be NULL.
    OptText(Option<String>),
    Int(i64),
    TextArray(Vec<String>),
    /// A text array whose elements may be NULL.
    OptTextArray(Vec<Option<String>>),
    IntArray(Vec<i32>),
    /// A value known only when apply runs; bound from [`RunValues`].
    Run(RunValue),
}

/// The values of a statement that only apply knows: shown by name in `plan --show-sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunValue {
    /// The `neo_reconcile.runs` id of this apply in the region.
    RunId,
    /// `<login role>@<host>` is built by the server from `session_user`; this is the host.
    Host,
    /// The desired state's git commit (NULL outside git).
    Commit,
    /// How long a `-- neo:no-transaction` migration took, in milliseconds.
    ElapsedMs,
    /// The database's error text of a failed attempt.
    Error,
    /// How many statements of a failed `-- neo:no-transaction` migration completed (NULL
    /// for a transactional one).
    StatementsCompleted,
}

impl RunValue {
    fn name(self) -> &'static str {
        match self {
            RunValue::RunId => "<run id>",
            RunValue::Host => "<host>",
            RunValue::Commit => "<git commit>",
            RunValue::ElapsedMs => "<elapsed ms>",
            RunValue::Error => "<error text>",
            RunValue::StatementsCompleted => "<statements completed>",
        }
    }
}

/// One thing apply does on a connection, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `BEGIN`: the following steps up to [`Step::Commit`] run in one transaction.
    Begin,
    /// A statement neo-reconcile wrote.
    Exec(Statement),
    /// Text taken verbatim from a migration file, sent as one simple query.
    Script { file: String, sql: String },
    /// `COMMIT`.
    Commit,
    /// Not sent: explains a step that runs elsewhere (e.g. neo-reconcile's embedded
    /// bookkeeping migrations).
    Note(String),
}

/// Renders steps as `plan --show-sql` shows them: each statement's text, its bound values as
/// a comment underneath (JSON-quoted, so a value can never be mistaken for SQL).
pub fn render_steps(steps: &[Step]) -> Vec<String> {
    steps.iter().map(render_step).collect()
}

fn render_step(step: &Step) -> String {
    match step {
        Step::Begin => "BEGIN".into(),
        Step::Commit => "COMMIT".into(),
        Step::Note(n) => format!("-- {n}"),
        Step::Script { file, sql } => format!("-- {file}\n{}", sql.trim_end()),
        Step::Exec(s) => {
            let mut out = s.sql.clone();
            if !s.params.is_empty() {
                out.push_str("\n  --");
                for (i, v) in s.params.iter().enumerate() {
                    let sep = if i == 0 { " " } else { ", " };
                    let _ = write!(out, "{sep}${} = {}", i + 1, render_value(v));
                }
            }
            out
        }
    }
}

fn render_value(v: &Value) -> String {
    let json = |s: &str| serde_json::to_string(s).expect("a string serializes");
    match v {
        Value::Text(s) => json(s),
        Value::OptText(Some(s)) => json(s),
        Value::OptText(None) => "NULL".into(),
        Value::Int(i) => i.to_string(),
        Value::TextArray(a) => format!(
            "[{}]",
            a.iter().map(|s| json(s)).collect::<Vec<_>>().join(", ")
        ),
        Value::OptTextArray(a) => format!(
            "[{}]",
            a.iter()
                .map(|s| s.as_deref().map_or("NULL".into(), json))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::IntArray(a) => format!(
            "[{}]",
            a.iter().map(i32::to_string).collect::<Vec<_>>().join(", ")
        ),
        Value::Run(r) => r.name().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(ident("plain"), "\"plain\"");
    }

    #[test]
    fn values_render_as_json_under_their_statement() {
        let s = Statement::with(
            "INSERT INTO t VALUES ($1, $2, $3, $4)",
            vec![
                Value::Text("it's \\' a\"b".into()),
                Value::OptText(None),
                Value::Int(7),
                Value::Run(RunValue::RunId),
            ],
        );
        assert_eq!(
            render_steps(&[Step::Exec(s)]),
            vec![
                "INSERT INTO t VALUES ($1, $2, $3, $4)\n  -- $1 = \"it's \\\\' a\\\"b\", $2 = NULL, $3 = 7, $4 = <run id>"
            ]
        );
    }
}
