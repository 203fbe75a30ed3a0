//! A mutation test of `neo-reconcile validate` over the example desired-state tree.
//!
//! Each case copies nothing new: two workers each keep one copy of `desired-state/`, change
//! it in one way (byte flips, truncation, dropped and duplicated lines, type changes, huge
//! numbers and strings, values nested 10,000 deep and more, NUL bytes, invalid UTF-8, a BOM,
//! CRLF line endings, non-UTF-8 file names, or several of these at once), run the built
//! binary on it under a timeout, and put the tree back. Every case must end within the timeout,
//! exit 0 or 1 (never a panic or a signal), exit 1 exactly when an error is reported, and
//! every diagnostic must carry a file and a line: `path:line:col: severity: ...` in the text
//! output, and a file, a line and a column within the file's lines in the JSON output.
//!
//! The cases are deterministic: `NEO_MUTATION_SEED` (default below) and the case number pick
//! every change. `NEO_MUTATION_CASES` sets how many cases run (300 by default).

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_neo-reconcile");

/// The default seed; any other is given with `NEO_MUTATION_SEED`.
const DEFAULT_SEED: u64 = 0x6e65_6f2d_7661_6c69;

/// The default number of cases; more with `NEO_MUTATION_CASES`.
const DEFAULT_CASES: usize = 300;

/// How long one run of validate may take before it counts as a hang. Generous, because the
/// machine may be busy: a healthy run takes well under a second.
const TIMEOUT: Duration = Duration::from_secs(20);

/// How many cases run at once.
const WORKERS: usize = 2;

/// SplitMix64: a small deterministic generator, so that no dependency is needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The kinds of change, taken in turn so that every kind is covered by a few hundred cases.
const KINDS: &[&str] = &[
    "byte_flip",
    "truncate",
    "drop_line",
    "duplicate_line",
    "type_change",
    "huge_number",
    "huge_string",
    "deep_nesting",
    "nul_bytes",
    "invalid_utf8",
    "bom",
    "crlf",
    "non_utf8_file_name",
    "several",
];

/// One file of the tree: its path relative to the root, as bytes, and its content.
#[derive(Clone)]
struct File {
    path: Vec<u8>,
    bytes: Vec<u8>,
}

/// What a case does to the tree: files written (created or replaced) and files removed.
#[derive(Default)]
struct Change {
    what: Vec<String>,
    write: Vec<File>,
    remove: Vec<Vec<u8>>,
}

/// The example tree's files, read once.
fn example_files() -> Vec<File> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("desired-state");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let rel = path.strip_prefix(&root).unwrap();
                files.push(File {
                    path: rel.as_os_str().as_bytes().to_vec(),
                    bytes: fs::read(&path).unwrap(),
                });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

fn is_toml(f: &File) -> bool {
    f.path.ends_with(b".toml")
}

fn is_sql(f: &File) -> bool {
    f.path.ends_with(b".sql")
}

fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// Splits `bytes` into lines, each with its `\n`.
fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split_inclusive(|b| *b == b'\n')
        .map(|l| l.to_vec())
        .collect()
}

/// The lines of a TOML file that assign a value (`key = value`), by index.
fn assignments(bytes: &[u8]) -> Vec<usize> {
    lines(bytes)
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            let t = String::from_utf8_lossy(l);
            let t = t.trim_start();
            !t.starts_with('#') && !t.starts_with('[') && t.contains('=')
        })
        .map(|(i, _)| i)
        .collect()
}

/// An assignment line of `bytes`, if it has any.
fn some_assignment(rng: &mut Rng, bytes: &[u8]) -> Option<usize> {
    let all = assignments(bytes);
    (!all.is_empty()).then(|| all[rng.below(all.len())])
}

/// `bytes` with the value of assignment line `index` replaced by `value`, or with a new
/// assignment of `value` appended when there is no such line.
fn replace_value(bytes: &[u8], index: Option<usize>, value: &[u8]) -> Vec<u8> {
    let Some(index) = index else {
        let mut out = bytes.to_vec();
        out.extend_from_slice(b"\nmutated = ");
        out.extend_from_slice(value);
        out.push(b'\n');
        return out;
    };
    let mut all = lines(bytes);
    let line = &all[index];
    let eq = line.iter().position(|b| *b == b'=').unwrap();
    let mut new = line[..=eq].to_vec();
    new.push(b' ');
    new.extend_from_slice(value);
    new.push(b'\n');
    all[index] = new;
    all.concat()
}

/// One change of kind `kind` to one file of `files`.
fn mutate(kind: &str, files: &[File], rng: &mut Rng) -> Change {
    // Files emptied by an earlier change of the same case are left alone when others remain.
    let some = |keep: fn(&File) -> bool| {
        let full: Vec<&File> = files
            .iter()
            .filter(|f| keep(f) && !f.bytes.is_empty())
            .collect();
        if full.is_empty() {
            files.iter().filter(|f| keep(f)).collect()
        } else {
            full
        }
    };
    let tomls: Vec<&File> = some(is_toml);
    let sqls: Vec<&File> = some(is_sql);
    let any: Vec<&File> = tomls.iter().chain(sqls.iter()).copied().collect();
    let mut change = Change::default();
    let edit = |change: &mut Change, file: &File, bytes: Vec<u8>, what: String| {
        change.what.push(format!("{what} in {}", show(&file.path)));
        change.write.push(File {
            path: file.path.clone(),
            bytes,
        });
    };
    match kind {
        "byte_flip" => {
            let f = *rng.pick(&any);
            let mut b = f.bytes.clone();
            if b.is_empty() {
                b.push(b'x');
            }
            let mut at = Vec::new();
            for _ in 0..=rng.below(3) {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
                at.push(i);
            }
            edit(&mut change, f, b, format!("bits flipped at bytes {at:?}"));
        }
        "truncate" => {
            let f = *rng.pick(&any);
            let n = rng.below(f.bytes.len());
            edit(
                &mut change,
                f,
                f.bytes[..n].to_vec(),
                format!("truncated to {n} bytes"),
            );
        }
        "drop_line" => {
            let f = *rng.pick(&any);
            let mut all = lines(&f.bytes);
            if all.is_empty() {
                all.push(b"\n".to_vec());
            }
            let i = rng.below(all.len());
            all.remove(i);
            edit(
                &mut change,
                f,
                all.concat(),
                format!("line {} dropped", i + 1),
            );
        }
        "duplicate_line" => {
            let f = *rng.pick(&any);
            let mut all = lines(&f.bytes);
            if all.is_empty() {
                all.push(b"\n".to_vec());
            }
            let i = rng.below(all.len());
            let to = rng.below(all.len() + 1);
            let mut line = all[i].clone();
            if !line.ends_with(b"\n") {
                line.push(b'\n');
            }
            all.insert(to, line);
            edit(
                &mut change,
                f,
                all.concat(),
                format!("line {} copied to line {}", i + 1, to + 1),
            );
        }
        "type_change" => {
            let f = *rng.pick(&tomls);
            let i = some_assignment(rng, &f.bytes);
            let value = *rng.pick(&[
                "42",
                "-1",
                "3.14",
                "\"text\"",
                "''",
                "true",
                "[1, \"a\", true]",
                "[]",
                "{ a = 1, b = \"c\" }",
                "{}",
                "1979-05-27T07:32:00Z",
                "07:32:00",
                "inf",
                "nan",
                "\"\"\"multi\nline\"\"\"",
            ]);
            let b = replace_value(&f.bytes, i, value.as_bytes());
            edit(
                &mut change,
                f,
                b,
                format!("assignment {i:?} set to {value:?}"),
            );
        }
        "huge_number" => {
            let number = *rng.pick(&[
                "99999999999999999999999999999999",
                "-9223372036854775809",
                "9223372036854775807",
                "-9223372036854775808",
                "18446744073709551616",
                "4294967296",
                "2147483648",
                "1e999",
                "-1e-999",
                "0x7fffffffffffffff",
                "0b1111111111111111111111111111111111111111111111111111111111111111",
            ]);
            if rng.below(3) == 0 {
                // A migration whose version does not fit any integer type.
                let f = *rng.pick(&sqls);
                let dir = show(&f.path);
                let dir = dir.rsplit_once('/').unwrap().0;
                let digits = number.trim_start_matches('-');
                let digits: String = digits.chars().filter(|c| c.is_ascii_digit()).collect();
                let path = format!("{dir}/V{digits}__huge_version.sql");
                change.what.push(format!("added {path}"));
                change.write.push(File {
                    path: path.into_bytes(),
                    bytes: f.bytes.clone(),
                });
            } else {
                let f = *rng.pick(&tomls);
                let i = some_assignment(rng, &f.bytes);
                let b = replace_value(&f.bytes, i, number.as_bytes());
                edit(
                    &mut change,
                    f,
                    b,
                    format!("assignment {i:?} set to {number}"),
                );
            }
        }
        "huge_string" => {
            let n = *rng.pick(&[70_000, 1_000_000, 4_000_000]);
            let f = *rng.pick(&any);
            if is_toml(f) {
                let i = some_assignment(rng, &f.bytes);
                let mut value = b"\"".to_vec();
                value.extend(std::iter::repeat_n(b'x', n));
                value.push(b'"');
                let b = replace_value(&f.bytes, i, &value);
                edit(
                    &mut change,
                    f,
                    b,
                    format!("assignment {i:?} set to a string of {n} bytes"),
                );
            } else {
                let mut b = f.bytes.clone();
                b.extend_from_slice(b"\nCOMMENT ON TABLE users IS '");
                b.extend(std::iter::repeat_n(b'x', n));
                b.extend_from_slice(b"';\n");
                edit(
                    &mut change,
                    f,
                    b,
                    format!("a string literal of {n} bytes appended"),
                );
            }
        }
        "deep_nesting" => {
            let depth = *rng.pick(&[10_000, 10_000, 100_000]);
            let f = *rng.pick(&any);
            let (open, close, inner): (&[u8], &[u8], &[u8]) = if is_toml(f) {
                *rng.pick(&[
                    (&b"["[..], &b"]"[..], &b"1"[..]),
                    (&b"{ a = "[..], &b" }"[..], &b"1"[..]),
                    (&b"[{ a = "[..], &b" }]"[..], &b"[]"[..]),
                ])
            } else {
                *rng.pick(&[
                    (&b"("[..], &b")"[..], &b"1"[..]),
                    (&b"ARRAY["[..], &b"]"[..], &b"1"[..]),
                    (&b"(SELECT "[..], &b")"[..], &b"1"[..]),
                ])
            };
            let mut value = Vec::new();
            for _ in 0..depth {
                value.extend_from_slice(open);
            }
            value.extend_from_slice(inner);
            for _ in 0..depth {
                value.extend_from_slice(close);
            }
            if is_toml(f) {
                let i = some_assignment(rng, &f.bytes);
                let b = replace_value(&f.bytes, i, &value);
                edit(
                    &mut change,
                    f,
                    b,
                    format!("assignment {i:?} nested {depth} deep"),
                );
            } else {
                let mut b = f.bytes.clone();
                b.extend_from_slice(b"\nCREATE VIEW deep AS SELECT ");
                b.extend_from_slice(&value);
                b.extend_from_slice(b" AS x;\n");
                edit(
                    &mut change,
                    f,
                    b,
                    format!("an expression nested {depth} deep appended"),
                );
            }
        }
        "nul_bytes" => {
            let f = *rng.pick(&any);
            let mut b = f.bytes.clone();
            let mut at = Vec::new();
            for _ in 0..=rng.below(3) {
                let i = rng.below(b.len() + 1);
                b.insert(i, 0);
                at.push(i);
            }
            edit(&mut change, f, b, format!("NUL bytes inserted at {at:?}"));
        }
        "invalid_utf8" => {
            let f = *rng.pick(&any);
            let mut b = f.bytes.clone();
            let i = rng.below(b.len() + 1);
            let bad: &[u8] = *rng.pick(&[
                &b"\xff"[..],
                &b"\xc3\x28"[..],
                &b"\xed\xa0\x80"[..],
                &b"\xf8\x88\x80\x80\x80"[..],
            ]);
            b.splice(i..i, bad.iter().copied());
            edit(
                &mut change,
                f,
                b,
                format!("invalid UTF-8 {bad:?} inserted at {i}"),
            );
        }
        "bom" => {
            let f = *rng.pick(&any);
            let mut b = b"\xef\xbb\xbf".to_vec();
            b.extend_from_slice(&f.bytes);
            edit(&mut change, f, b, "a byte-order mark prepended".into());
        }
        "crlf" => {
            let f = *rng.pick(&any);
            let mut b = Vec::new();
            for byte in &f.bytes {
                if *byte == b'\n' {
                    b.push(b'\r');
                }
                b.push(*byte);
            }
            edit(&mut change, f, b, "CRLF line endings".into());
        }
        "non_utf8_file_name" => {
            let f = *rng.pick(&any);
            let name = show(&f.path);
            let (dir, _) = name.rsplit_once('/').unwrap_or(("", ""));
            let mut path = if dir.is_empty() {
                Vec::new()
            } else {
                format!("{dir}/").into_bytes()
            };
            let new_name: &[u8] = if is_sql(f) {
                *rng.pick(&[&b"V9__\xff\xfe.sql"[..], &b"V\xff__x.sql"[..]])
            } else {
                *rng.pick(&[&b"\xff\xfe.toml"[..], &b"t\xe9st.toml"[..]])
            };
            path.extend_from_slice(new_name);
            if rng.below(2) == 0 {
                change
                    .what
                    .push(format!("{name} renamed to {}", show(&path)));
                change.remove.push(f.path.clone());
            } else {
                change
                    .what
                    .push(format!("{name} copied to {}", show(&path)));
            }
            change.write.push(File {
                path,
                bytes: f.bytes.clone(),
            });
        }
        other => unreachable!("unknown kind {other}"),
    }
    change
}

/// A case's change: one of its kind, or two to four of random kinds for "several".
fn case_change(case: usize, seed: u64, files: &[File]) -> (String, Change) {
    let mut rng = Rng(seed ^ (case as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    let kind = KINDS[case % KINDS.len()];
    if kind != "several" {
        return (kind.to_string(), mutate(kind, files, &mut rng));
    }
    // Changes to the same file are made one on top of the other.
    let mut current: Vec<File> = files.to_vec();
    let mut all = Change::default();
    for _ in 0..2 + rng.below(3) {
        let k = KINDS[rng.below(KINDS.len() - 1)];
        let change = mutate(k, &current, &mut rng);
        for w in &change.write {
            match current.iter_mut().find(|f| f.path == w.path) {
                Some(f) => f.bytes = w.bytes.clone(),
                None => current.push(w.clone()),
            }
        }
        current.retain(|f| !change.remove.contains(&f.path));
        all.what.extend(change.what);
        all.remove.extend(change.remove);
    }
    // The net effect: every file that differs from the example, and every one removed.
    for f in &current {
        if !files.iter().any(|o| o.path == f.path && o.bytes == f.bytes) {
            all.write.push(f.clone());
        }
    }
    all.remove.retain(|p| !current.iter().any(|f| &f.path == p));
    ("several".to_string(), all)
}

/// What one run of the binary did.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs `neo-reconcile validate <root> [--format json]`, killing it after [`TIMEOUT`].
fn validate(root: &Path, json: bool) -> Result<Outcome, String> {
    let mut cmd = Command::new(BIN);
    cmd.arg("validate").arg(root);
    if json {
        cmd.args(["--format", "json"]);
    }
    let started = Instant::now();
    let mut child = cmd
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {BIN}: {e}"))?;
    // Drain both pipes on threads so that a large report cannot block the child.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).ok();
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut v).ok();
        v
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("hung: no exit within {TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    Ok(Outcome {
        code: status.code(),
        stdout: String::from_utf8_lossy(&out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
        elapsed,
    })
}

/// Whether `line` reads `<file>:<line>:<column>: <error|warning>: ...` with a non-empty
/// file and line and column from 1.
fn is_located(line: &str) -> bool {
    for severity in [": error: ", ": warning: "] {
        let Some(at) = line.find(severity) else {
            continue;
        };
        let mut parts = line[..at].rsplitn(3, ':');
        let (Some(col), Some(ln), Some(file)) = (parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        let positive = |s: &str| s.parse::<usize>().is_ok_and(|n| n >= 1);
        return !file.is_empty() && positive(ln) && positive(col);
    }
    false
}

/// How strictly the text output is read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lines {
    /// Every line but the summary starts with `path:line:col: severity:`.
    OnePerDiagnostic,
    /// A line that does not is taken as the continuation of the diagnostic before it (a
    /// message that quotes a value holding a newline; see
    /// `a_diagnostic_quoting_a_newline_stays_on_one_located_line`), and the located lines must
    /// still be exactly one per diagnostic of the JSON output.
    AllowContinuations,
}

/// The problems of one case's two runs; empty when the case passes.
fn check_case(root: &Path, lines: Lines) -> Vec<String> {
    let mut problems = Vec::new();
    // Text output: every diagnostic starts with its location, and the last line is the summary.
    let mut located_lines = None;
    match validate(root, false) {
        Err(e) => problems.push(format!("text: {e}")),
        Ok(run) => {
            common_checks("text", &run, &mut problems);
            let all: Vec<&str> = run.stdout.lines().collect();
            let (summary, diagnostics) = all.split_last().unwrap_or((&"", &[]));
            let root_shown = root.display().to_string();
            if !summary.starts_with(&format!("{root_shown}: valid"))
                && !summary.starts_with(&format!("{root_shown}: invalid"))
            {
                problems.push(format!(
                    "text: the last line is not the summary: {summary:?}"
                ));
            }
            if diagnostics.first().is_some_and(|l| !is_located(l)) {
                problems.push(format!(
                    "text: the first line is not located: {:?}",
                    diagnostics[0]
                ));
            }
            for line in diagnostics {
                if !is_located(line) && lines == Lines::OnePerDiagnostic {
                    problems.push(format!("text: a line without file and line: {line:?}"));
                }
            }
            let located: Vec<&&str> = diagnostics.iter().filter(|l| is_located(l)).collect();
            let errors = located.iter().filter(|l| l.contains(": error: ")).count();
            if (run.code == Some(1)) != (errors > 0) {
                problems.push(format!(
                    "text: exit {:?} with {errors} error line(s)",
                    run.code
                ));
            }
            located_lines = Some(located.len());
        }
    }
    // JSON output: every diagnostic has a file, a line and a column, the line within the file.
    match validate(root, true) {
        Err(e) => problems.push(format!("json: {e}")),
        Ok(run) => {
            common_checks("json", &run, &mut problems);
            match serde_json::from_str::<serde_json::Value>(&run.stdout) {
                Err(e) => problems.push(format!("json: not JSON ({e}): {:.300}", run.stdout)),
                Ok(report) => {
                    let diagnostics = report["diagnostics"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    let mut errors = 0;
                    for d in &diagnostics {
                        let file = d["file"].as_str().unwrap_or("");
                        let line = d["line"].as_u64().unwrap_or(0);
                        let column = d["column"].as_u64().unwrap_or(0);
                        if d["severity"] == "error" {
                            errors += 1;
                        }
                        if file.is_empty() || line == 0 || column == 0 {
                            problems.push(format!(
                                "json: a diagnostic without file, line or column: {d}"
                            ));
                            continue;
                        }
                        // A file that exists (a missing one is reported at 1:1) has that line.
                        if let Ok(bytes) = fs::read(root.join(file)) {
                            let count = bytes.iter().filter(|b| **b == b'\n').count() + 1;
                            if line as usize > count {
                                problems.push(format!(
                                    "json: line {line} is past the end of {file} ({count} lines): {d}"
                                ));
                            }
                        }
                    }
                    if (run.code == Some(1)) != (errors > 0) || report["errors"] != errors {
                        problems.push(format!(
                            "json: exit {:?}, {errors} error diagnostic(s), \"errors\": {}",
                            run.code, report["errors"]
                        ));
                    }
                    if located_lines.is_some_and(|n| n != diagnostics.len()) {
                        problems.push(format!(
                            "text: {} located line(s), json: {} diagnostic(s)",
                            located_lines.unwrap(),
                            diagnostics.len()
                        ));
                    }
                }
            }
        }
    }
    problems
}

/// Exit 0 or 1, never a signal or a panic, nothing on standard error.
fn common_checks(format: &str, run: &Outcome, problems: &mut Vec<String>) {
    if !matches!(run.code, Some(0) | Some(1)) {
        problems.push(format!(
            "{format}: exit {:?} (a signal when None) after {:?}; stderr: {:.2000}",
            run.code, run.elapsed, run.stderr
        ));
    }
    if run.stderr.contains("panicked") || run.stderr.contains("has overflowed its stack") {
        problems.push(format!("{format}: {:.2000}", run.stderr));
    }
}

/// Writes `change` into the tree at `root`, and returns how to undo it.
fn apply_change(root: &Path, change: &Change) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut undo = Vec::new();
    let path_of = |p: &[u8]| root.join(OsString::from_vec(p.to_vec()));
    for p in &change.remove {
        let path = path_of(p);
        undo.push((path.clone(), fs::read(&path).ok()));
        let _ = fs::remove_file(&path);
    }
    for f in &change.write {
        let path = path_of(&f.path);
        undo.push((path.clone(), fs::read(&path).ok()));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, &f.bytes).unwrap();
    }
    undo
}

fn undo_change(undo: Vec<(PathBuf, Option<Vec<u8>>)>) {
    for (path, before) in undo.into_iter().rev() {
        match before {
            Some(bytes) => fs::write(&path, bytes).unwrap(),
            None => {
                let _ = fs::remove_file(&path);
            }
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| {
        let s = s.trim();
        s.strip_prefix("0x")
            .map_or_else(|| s.parse().ok(), |hex| u64::from_str_radix(hex, 16).ok())
    })
}

#[test]
fn validate_never_panics_hangs_or_reports_an_error_without_file_and_line_on_mutated_trees() {
    let started = Instant::now();
    let seed = env_number("NEO_MUTATION_SEED").unwrap_or(DEFAULT_SEED);
    let cases = env_number("NEO_MUTATION_CASES").map_or(DEFAULT_CASES, |n| n as usize);
    eprintln!("mutation test: NEO_MUTATION_SEED={seed:#x} NEO_MUTATION_CASES={cases}");
    let files = example_files();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|worker| {
                let files = &files;
                scope.spawn(move || {
                    let tmp = TempDir::new().unwrap();
                    let root = tmp.path().join("desired-state");
                    for f in files {
                        let path = root.join(OsString::from_vec(f.path.clone()));
                        fs::create_dir_all(path.parent().unwrap()).unwrap();
                        fs::write(path, &f.bytes).unwrap();
                    }
                    let mut failures = Vec::new();
                    for case in (worker..cases).step_by(WORKERS) {
                        let (kind, change) = case_change(case, seed, files);
                        let undo = apply_change(&root, &change);
                        let problems = check_case(&root, Lines::AllowContinuations);
                        undo_change(undo);
                        if !problems.is_empty() {
                            failures.push(format!(
                                "case {case} ({kind}: {}):\n  {}",
                                change.what.join("; "),
                                problems.join("\n  ")
                            ));
                        }
                    }
                    failures
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    eprintln!(
        "mutation test: {cases} cases in {:?}, {} failed",
        started.elapsed(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed (NEO_MUTATION_SEED={seed:#x}):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_unmutated_example_tree_passes_the_mutation_checks() {
    // The checks themselves accept the example tree, so a failure above is the mutation's.
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("desired-state");
    for f in example_files() {
        let path = root.join(OsString::from_vec(f.path));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, f.bytes).unwrap();
    }
    assert_eq!(
        check_case(&root, Lines::OnePerDiagnostic),
        Vec::<String>::new()
    );
}

/// Known gap, kept as a failing test (ignored) until validate fixes it: a diagnostic that
/// quotes a value holding a newline (a multi-line TOML string, or a token of a migration that
/// spans lines) prints that newline as is, so the text output's diagnostic continues on a line
/// without `path:line:col:`, which CI annotations and `grep` miss. Found by the mutation test
/// above (a `type_change` to a multi-line string, and a byte flip that opened a quoted
/// identifier in a migration).
#[test]
fn a_diagnostic_quoting_a_newline_stays_on_one_located_line() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("desired-state");
    for f in example_files() {
        let path = root.join(OsString::from_vec(f.path));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, f.bytes).unwrap();
    }
    let stark = root.join("tenants/stark.toml");
    let text = fs::read_to_string(&stark).unwrap();
    fs::write(
        &stark,
        text.replace("slug = \"stark\"", "slug = \"\"\"multi\nline\"\"\""),
    )
    .unwrap();
    let v5 = root.join("schemas/tenant_template/V5__create_active_projects_view.sql");
    let mut sql = fs::read_to_string(&v5).unwrap();
    sql += "\nSELECT \"unterminated\nidentifier FROM users;\n";
    fs::write(&v5, sql).unwrap();
    assert_eq!(
        check_case(&root, Lines::OnePerDiagnostic),
        Vec::<String>::new()
    );
}
