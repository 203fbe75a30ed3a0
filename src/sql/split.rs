//! Splitting a `-- neo:no-transaction` migration into the statements that run one by one,
//! outside any transaction.

/// Splits a SQL script into statements at top-level semicolons, understanding `--` and
/// nested `/* */` comments, quoted strings (`'...'`, `E'...'`), quoted identifiers and
/// dollar-quoted bodies (`$$...$$`, `$tag$...$tag$`). Statements that hold only comments and
/// white space are dropped. Used for `-- neo:no-transaction` migrations, whose statements run
/// one by one outside any transaction.
pub fn split_statements(script: &str) -> Vec<String> {
    let b = script.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    let mut has_code = false;
    while i < b.len() {
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b'\'' => {
                let backslash = i > 0 && (b[i - 1] == b'E' || b[i - 1] == b'e');
                i += 1;
                while i < b.len() {
                    if backslash && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                has_code = true;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += 1;
                }
                has_code = true;
            }
            b'$' => {
                // A dollar quote's tag: $$ or $ident$ (not $1, a parameter).
                let tag_end = b[i + 1..]
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                    .map(|p| i + 1 + p);
                if let Some(end) = tag_end
                    .filter(|&e| b[e] == b'$' && !b.get(i + 1).is_some_and(u8::is_ascii_digit))
                {
                    let tag = &script[i..=end];
                    match script[end + 1..].find(tag) {
                        Some(close) => i = end + 1 + close + tag.len() - 1,
                        None => i = b.len() - 1,
                    }
                }
                has_code = true;
            }
            b';' => {
                if has_code {
                    out.push(script[start..i].trim().to_string());
                }
                start = i + 1;
                has_code = false;
            }
            c if !c.is_ascii_whitespace() => has_code = true,
            _ => {}
        }
        i += 1;
    }
    if has_code {
        out.push(script[start..].trim().to_string());
    }
    out
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
    fn comment_only_scripts_have_no_statements() {
        assert!(split_statements("-- neo:no-transaction\n-- nothing\n/* here; */\n").is_empty());
    }
}
