//! Splitting SQL text into statements the way PostgreSQL does.
//!
//! Migrations do not come through here: they are parsed once when the tree is loaded, and
//! `desired::Migration::statements` holds the statements a `-- neo:no-transaction` migration
//! runs one by one. This is for other SQL text.

/// Splits a SQL script into its statements with PostgreSQL's own parser (the `pg_query`
/// crate): semicolons in comments, quoted strings and identifiers, dollar-quoted bodies and
/// SQL-standard function bodies (`BEGIN ATOMIC ... END`) do not split. Each statement is
/// trimmed, without its semicolon; comments before a statement belong to it. A script that
/// does not parse is returned whole, so that running it reports PostgreSQL's error.
pub fn split_statements(script: &str) -> Vec<String> {
    match pg_query::split_with_parser(script) {
        Ok(statements) => statements
            .into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        Err(_) if script.trim().is_empty() => Vec::new(),
        Err(_) => vec![script.trim().to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::split_statements;

    #[test]
    fn splits_at_top_level_semicolons_only() {
        let script = "-- neo:no-transaction\n-- a comment; with a semicolon\nDROP INDEX CONCURRENTLY IF EXISTS i;\n\
            /* block; /* nested; */ still */ CREATE INDEX CONCURRENTLY i ON t (a) WHERE b <> ';';\n\
            DO $body$ BEGIN PERFORM 1; END $body$;\nSELECT $$a;b$$, E'it\\'s;', \"we;ird\", $1\n-- trailing comment;\n";
        let got = split_statements(script);
        assert_eq!(got.len(), 4, "{got:#?}");
        assert!(
            got[0].ends_with("DROP INDEX CONCURRENTLY IF EXISTS i"),
            "{}",
            got[0]
        );
        assert!(got[1].ends_with("WHERE b <> ';'"), "{}", got[1]);
        assert_eq!(got[2], "DO $body$ BEGIN PERFORM 1; END $body$");
        assert!(
            got[3].starts_with("SELECT $$a;b$$, E'it\\'s;', \"we;ird\", $1"),
            "{}",
            got[3]
        );
    }

    #[test]
    fn a_sql_standard_function_body_is_one_statement() {
        let got = split_statements(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);\n\
             CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;\n",
        );
        assert_eq!(
            got,
            vec![
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)",
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END",
            ]
        );
    }

    #[test]
    fn comment_only_scripts_have_no_statements() {
        assert!(split_statements("-- neo:no-transaction\n-- nothing\n/* here; */\n").is_empty());
    }
}
