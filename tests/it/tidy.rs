//! The shape of the code, enforced (rust-analyzer's `tidy.rs` is the model): the planner and
//! the desired state do no I/O, every source file says what it is for, ARCHITECTURE.md's code
//! map names exactly the modules that exist, and no file or function grows past what one
//! reader can hold.

use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The longest a source file under `src/` may be (test files excepted).
const MAX_FILE_LINES: usize = 800;

/// The longest a function may be, in lines, signature to closing brace ("about 100").
const MAX_FN_LINES: usize = 110;

/// What the pure modules must not use: database, async runtime, git, or a wall clock.
const IO: [&str; 5] = [
    "sqlx",
    "tokio",
    "git2",
    "std::time::Instant",
    "Instant::now",
];

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn relative(path: &Path) -> String {
    path.strip_prefix(ROOT).unwrap().display().to_string()
}

/// The code outside `#[cfg(test)]` modules (test code may use anything).
fn non_test_code(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

#[test]
fn plan_and_desired_import_no_io() {
    let mut offenders = Vec::new();
    for dir in ["src/plan", "src/desired"] {
        for file in rust_files(&Path::new(ROOT).join(dir)) {
            let name = relative(&file);
            if name.ends_with("tests.rs") {
                continue;
            }
            let text = fs::read_to_string(&file).unwrap();
            for (n, line) in non_test_code(&text).lines().enumerate() {
                let code = line.split("//").next().unwrap();
                for io in IO {
                    if code.contains(io) {
                        offenders.push(format!("{name}:{}: uses {io}: {}", n + 1, line.trim()));
                    }
                }
                // Reading the tree is the loader's job, and only its file-reading module's.
                let fs = code.contains("fs::")
                    || code.contains("std::fs")
                    || (code.contains("std::{") && code.contains("fs"));
                if fs && !name.ends_with("desired/load/files.rs") {
                    offenders.push(format!("{name}:{}: uses std::fs: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "the planner and the desired state must stay pure:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn every_source_file_has_a_module_comment() {
    let missing: Vec<String> = rust_files(&Path::new(ROOT).join("src"))
        .into_iter()
        .filter(|f| !fs::read_to_string(f).unwrap().starts_with("//!"))
        .map(|f| relative(&f))
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` comment saying what they are for:\n{}",
        missing.join("\n")
    );
}

#[test]
fn no_source_file_is_too_long() {
    let long: Vec<String> = rust_files(&Path::new(ROOT).join("src"))
        .into_iter()
        .filter(|f| !f.ends_with("tests.rs"))
        .filter_map(|f| {
            let lines = fs::read_to_string(&f).unwrap().lines().count();
            (lines > MAX_FILE_LINES).then(|| format!("{} ({lines} lines)", relative(&f)))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_LINES} lines (split them by responsibility):\n{}",
        long.join("\n")
    );
}

/// Functions as (name, first line, length), found by their signature line and the closing
/// brace at the same indentation.
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let sig = [
            "fn ",
            "pub fn ",
            "async fn ",
            "pub async fn ",
            "pub(super) fn ",
            "pub(super) async fn ",
            "pub(crate) fn ",
            "pub(crate) async fn ",
        ]
        .iter()
        .find_map(|p| trimmed.strip_prefix(p));
        let Some(sig) = sig else { continue };
        let name: String = sig
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let close = format!("{}}}", " ".repeat(indent));
        if let Some(end) = lines[i..].iter().position(|l| *l == close) {
            out.push((name, i + 1, end + 1));
        }
    }
    out
}

#[test]
fn no_function_is_too_long() {
    let mut long = Vec::new();
    for file in rust_files(&Path::new(ROOT).join("src")) {
        let name = relative(&file);
        if name.ends_with("tests.rs") {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        for (f, line, len) in functions(non_test_code(&text)) {
            if len > MAX_FN_LINES {
                long.push(format!("{name}:{line}: fn {f} is {len} lines"));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines (split them):\n{}",
        long.join("\n")
    );
}

/// The paths ARCHITECTURE.md's code map names. A backticked path under `src/`, `tests/` or
/// `benches/` names itself and sets the directory that the file names after it are read
/// against, so that `mod.rs` or `vault/mod.rs` in the entry of `src/sources/` names
/// `src/sources/mod.rs` or `src/sources/vault/mod.rs`. Directories are given without their
/// trailing `/`.
fn code_map_paths() -> Vec<String> {
    let text = fs::read_to_string(Path::new(ROOT).join("ARCHITECTURE.md")).unwrap();
    let start = text
        .find("## Code map")
        .expect("ARCHITECTURE.md has a code map");
    let end = text[start..]
        .find("\n## ")
        .map_or(text.len(), |e| start + e);
    let mut dir = String::new();
    let mut paths = Vec::new();
    for name in text[start..end].split('`').skip(1).step_by(2) {
        if ["src/", "tests/", "benches/"]
            .iter()
            .any(|root| name.starts_with(root))
        {
            dir = match name.rsplit_once('/') {
                Some((d, _)) => format!("{d}/"),
                None => String::new(),
            };
            paths.push(name.trim_end_matches('/').to_string());
        } else if name.ends_with('/') {
            // Another directory (`migrations/`, `scripts/`): what follows is not read against
            // the last source directory.
            dir.clear();
        } else if name.ends_with(".rs") && !name.contains(char::is_whitespace) && !dir.is_empty() {
            paths.push(format!("{dir}{name}"));
        }
    }
    paths
}

#[test]
fn the_code_map_names_every_module_and_only_those() {
    let named = code_map_paths();
    let unnamed: Vec<String> = rust_files(&Path::new(ROOT).join("src"))
        .iter()
        .map(|f| relative(f))
        .filter(|path| {
            // A `mod.rs` is also named by its directory's entry.
            let dir = path.strip_suffix("/mod.rs");
            !named
                .iter()
                .any(|n| n == path || dir.is_some_and(|d| n == d))
        })
        .collect();
    let stale: Vec<&String> = named
        .iter()
        .filter(|n| !Path::new(ROOT).join(n).exists())
        .collect();
    let mut problems = Vec::new();
    if !unnamed.is_empty() {
        problems.push(format!(
            "modules that exist but ARCHITECTURE.md's code map does not name (add an entry for \
             each, under its directory's entry):\n{}",
            unnamed.join("\n")
        ));
    }
    if !stale.is_empty() {
        let stale: Vec<&str> = stale.iter().map(|s| s.as_str()).collect();
        problems.push(format!(
            "paths ARCHITECTURE.md's code map names that do not exist (as read against their \
             directory's entry):\n{}",
            stale.join("\n")
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
