//! Parsing one TOML file into a raw type while reporting every mistake in it: all syntax
//! errors (with the parser's recovery), every missing required key, and every unknown field
//! or value of the wrong type (the key at fault is removed and the file read again). The scan
//! for plaintext secrets runs first, in [`super::secrets`].

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use super::secrets::remove_secrets;
use crate::desired::diagnostic::{Diagnostics, SourceText};
use crate::desired::raw::{RawNeo, RawRegion, RawTenant};

/// The keys a raw file type requires, as dotted paths (`*` stands for every entry of a
/// table), so that every missing one is reported at once instead of serde's first.
pub(crate) trait Required {
    const REQUIRED: &'static [&'static str];
}

impl Required for RawNeo {
    const REQUIRED: &'static [&'static str] = &[
        "format_version",
        "control_plane",
        "control_plane.region",
        "control_plane.database",
        "schema_sets.*.scope",
    ];
}

impl Required for RawRegion {
    const REQUIRED: &'static [&'static str] = &[
        "name",
        "residency",
        "postgres",
        "postgres.host",
        "postgres.port",
        "postgres.database",
        "credentials",
    ];
}

impl Required for RawTenant {
    const REQUIRED: &'static [&'static str] = &["slug", "region"];
}

/// Parses a TOML file into a raw type, reporting every syntax error, every plaintext secret,
/// every missing required key, every unknown field and every value of the wrong type. `None`
/// when the file is unusable (syntax errors, or a required key missing).
pub(super) fn parse_toml<T: DeserializeOwned + Required>(
    src: &SourceText,
    diags: &mut Diagnostics,
) -> Option<T> {
    parse_toml_with(src, diags, true)
}

/// As [`parse_toml`]; `scan_secrets` off skips the plaintext-secret scan, for files (the
/// daemon's configuration) whose keys name secret files, such as `token_file`.
pub(crate) fn parse_toml_with<T: DeserializeOwned + Required>(
    src: &SourceText,
    diags: &mut Diagnostics,
    scan_secrets: bool,
) -> Option<T> {
    let (mut doc, errors) = DeTable::parse_recoverable(&src.text);
    // Secrets are reported even in a file that does not parse.
    let secrets = if scan_secrets {
        remove_secrets(doc.get_mut(), "", src, diags)
    } else {
        Vec::new()
    };
    if !errors.is_empty() {
        for e in &errors {
            let span = e.span().unwrap_or(0..0);
            diags.error(
                src,
                span.clone(),
                field_of_line(&src.text, span.start),
                format!("TOML syntax error: {}", first_line(e.message())),
            );
        }
        return None;
    }
    let mut missing = false;
    for path in T::REQUIRED {
        for (field, span) in missing_keys(doc.get_ref(), path) {
            if secrets.contains(&field) {
                continue; // Reported as a secret already.
            }
            missing = true;
            let key = field.rsplit('.').next().unwrap_or(&field).to_string();
            // Point at the start of the table's header line (`[postgres]`).
            let line_start = src.text[..span.start.min(src.text.len())]
                .rfind('\n')
                .map_or(0, |i| i + 1);
            diags.error(
                src,
                line_start..line_start,
                field,
                format!("missing required field `{key}`: add it"),
            );
        }
    }

    // Serde stops at the first problem: report it, remove the key at fault, read again.
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..256 {
        match T::deserialize(toml::de::Deserializer::from(doc.clone())) {
            Ok(value) => return (!missing).then_some(value),
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let message = first_line(e.message());
                if message.starts_with("missing field `") {
                    // Every missing key was reported above, or was removed for its type or as a
                    // secret and reported then.
                    if !missing && removed.is_empty() && secrets.is_empty() {
                        diags.error(src, span, "", format!("{message}: add it"));
                    }
                    return None;
                }
                let path = key_path_at(doc.get_ref(), span.start);
                let field = path.join(".");
                let message = if message.starts_with("unknown field") {
                    format!("{message}; fix the spelling or remove it (unknown fields are never ignored)")
                } else {
                    format!("wrong type: {}", message.replace("i64", "an integer"))
                };
                diags.error(src, span, field.clone(), message);
                if path.is_empty() || !remove_path(doc.get_mut(), &path) {
                    return None;
                }
                removed.push(field);
            }
        }
    }
    None
}

/// The missing keys of one required path, with the span to point at: the table that should
/// hold the key (its header), or the start of the file for top-level keys.
fn missing_keys(table: &DeTable<'_>, path: &str) -> Vec<(String, Range<usize>)> {
    fn walk(
        table: &DeTable<'_>,
        at: Range<usize>,
        parts: &[&str],
        prefix: &str,
        out: &mut Vec<(String, Range<usize>)>,
    ) {
        let Some((first, rest)) = parts.split_first() else {
            return;
        };
        let join = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        if *first == "*" {
            for (k, v) in table.iter() {
                if let DeValue::Table(inner) = v.get_ref() {
                    walk(inner, k.span(), rest, &join(k.get_ref()), out);
                }
            }
            return;
        }
        match table.get_key_value(*first) {
            None => out.push((join(first), at.start..at.start)),
            Some((k, v)) => {
                if let DeValue::Table(inner) = v.get_ref() {
                    walk(inner, k.span(), rest, &join(first), out);
                }
            }
        }
    }
    let mut out = Vec::new();
    let parts: Vec<&str> = path.split('.').collect();
    // A missing parent table is reported once, for the parent.
    walk(table, 0..0, &parts, "", &mut out);
    out
}

/// The field a syntax error is about, from the text: the key on the error's line, under the
/// last `[table]` header before it, or the header itself when the error is in one.
fn field_of_line(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let header = |l: &str| -> Option<String> {
        let t = l.trim_start();
        t.starts_with('[').then(|| {
            let inner = t.trim_start_matches('[');
            let end = inner.find(']').unwrap_or(inner.len());
            inner[..end].trim().to_string()
        })
    };
    if let Some(h) = header(line) {
        return h;
    }
    let table = text[..line_start]
        .lines()
        .rev()
        .find_map(header)
        .unwrap_or_default();
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"'))
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        });
    match (table.is_empty(), key) {
        (_, None) => table,
        (true, Some(k)) => k.to_string(),
        (false, Some(k)) => format!("{table}.{k}"),
    }
}

/// The key path (`["postgres", "port"]`) of the deepest key whose key or value contains the
/// byte offset `pos`. Every table is searched: the span of a `[table]` section covers only its
/// header, not the keys below it.
fn key_path_at(table: &DeTable<'_>, pos: usize) -> Vec<String> {
    for (k, v) in table.iter() {
        let here = vec![k.get_ref().to_string()];
        if k.span().contains(&pos) {
            return here;
        }
        if let DeValue::Table(inner) = v.get_ref() {
            let deeper = key_path_at(inner, pos);
            if !deeper.is_empty() {
                return [here, deeper].concat();
            }
        }
        if v.span().contains(&pos) {
            return here;
        }
    }
    Vec::new()
}

/// Removes the key at `path`; `false` when there is no such key.
fn remove_path(table: &mut DeTable<'_>, path: &[String]) -> bool {
    match path {
        [] => false,
        [last] => table.remove(last.as_str()).is_some(),
        [first, rest @ ..] => match table.get_mut(first.as_str()).map(|v| v.get_mut()) {
            Some(DeValue::Table(inner)) => remove_path(inner, rest),
            _ => false,
        },
    }
}

/// The first line of a message, trimmed: parsers' messages go on with context we do not show.
fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}
