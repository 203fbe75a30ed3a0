//! The loader's access to the file system, and the only one in `src/desired`: reading a
//! file as text (remembering its bytes for the digest), listing a directory, reading every
//! TOML file of a directory (a large one with several threads), and the digest over everything
//! read.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::parse::{parse_toml, Required};
use super::tree::Cx;
use crate::desired::diagnostic::{display_path, Diagnostics, SourceText};

impl Cx {
    /// Whether the root of the tree is a directory.
    pub(super) fn root_is_dir(&self) -> bool {
        self.root.is_dir()
    }

    /// Whether a directory relative to the root exists.
    pub(super) fn dir_exists(&self, dir: &str) -> bool {
        self.root.join(dir).is_dir()
    }

    /// Reads a file relative to the root as UTF-8 text, remembering its bytes for the digest.
    /// A missing file is `None`; an unreadable one is reported.
    pub(super) fn read(&mut self, relative: &Path) -> Option<SourceText> {
        read_file(&self.root, relative, &mut self.diags, &mut self.files)
    }

    /// Lists a directory relative to the root, sorted by name. A missing directory is empty.
    pub(super) fn list(&mut self, dir: &str) -> Vec<(String, bool)> {
        let Ok(entries) = fs::read_dir(self.root.join(dir)) else {
            return Vec::new();
        };
        let mut names: Vec<(String, bool)> = entries
            .filter_map(Result::ok)
            .map(|e| {
                let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
                (e.file_name().to_string_lossy().into_owned(), is_dir)
            })
            .filter(|(name, _)| !name.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    /// Reads every `*.toml` file of a directory. A file that cannot be used is `Err(stem)`,
    /// after its problems were reported, so that references to it are not reported again.
    ///
    /// A large directory (the tenants of a big fleet) is read and parsed by several threads,
    /// each over a contiguous run of the sorted names; their results, bytes and diagnostics
    /// are then taken in name order, so the outcome is the same as one thread's.
    #[allow(clippy::type_complexity)]
    pub(super) fn read_toml_dir<T: DeserializeOwned + Required + Send>(
        &mut self,
        dir: &str,
    ) -> Vec<Result<(SourceText, T), String>> {
        self.read_toml_dir_with(dir, None)
    }

    /// As [`Cx::read_toml_dir`], with `threads` threads when given (tests compare them).
    #[allow(clippy::type_complexity)]
    fn read_toml_dir_with<T: DeserializeOwned + Required + Send>(
        &mut self,
        dir: &str,
        threads: Option<usize>,
    ) -> Vec<Result<(SourceText, T), String>> {
        let mut tomls = Vec::new();
        for (name, is_dir) in self.list(dir) {
            let relative = Path::new(dir).join(&name);
            match name.strip_suffix(".toml") {
                Some(stem) => tomls.push((relative, stem.to_string())),
                None if !is_dir && !is_readme(&name) => self.diags.file_error(
                    &relative,
                    "",
                    format!("unexpected file in {dir}/: only <name>.toml files belong here"),
                ),
                None => {}
            }
        }
        let threads = threads.unwrap_or(if tomls.len() < FILES_PER_THREAD {
            1
        } else {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(tomls.len() / FILES_PER_THREAD)
                .min(MAX_THREADS)
        });
        let chunks: Vec<DirChunk<T>> = if threads <= 1 {
            vec![read_tomls(&self.root, &tomls)]
        } else {
            let root = &self.root;
            std::thread::scope(|scope| {
                let workers: Vec<_> = tomls
                    .chunks(tomls.len().div_ceil(threads))
                    .map(|chunk| scope.spawn(move || read_tomls::<T>(root, chunk)))
                    .collect();
                workers
                    .into_iter()
                    .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            })
        };
        let mut out = Vec::with_capacity(tomls.len());
        for chunk in chunks {
            self.diags.append(chunk.diags);
            self.files.extend(chunk.files);
            out.extend(chunk.parsed);
        }
        out
    }
}

/// A directory of TOML files is split between threads only from this many files per thread.
const FILES_PER_THREAD: usize = 256;

/// At most this many threads read one directory.
const MAX_THREADS: usize = 8;

/// What one thread read of a directory: each file's outcome in order, the bytes read, and the
/// problems found.
struct DirChunk<T> {
    parsed: Vec<Result<(SourceText, T), String>>,
    files: BTreeMap<String, Vec<u8>>,
    diags: Diagnostics,
}

/// Reads and parses a run of TOML files, given as (path relative to `root`, stem).
fn read_tomls<T: DeserializeOwned + Required>(
    root: &Path,
    tomls: &[(PathBuf, String)],
) -> DirChunk<T> {
    let mut chunk = DirChunk {
        parsed: Vec::with_capacity(tomls.len()),
        files: BTreeMap::new(),
        diags: Diagnostics::default(),
    };
    for (relative, stem) in tomls {
        let parsed = read_file(root, relative, &mut chunk.diags, &mut chunk.files)
            .and_then(|src| parse_toml::<T>(&src, &mut chunk.diags).map(|raw| (src, raw)));
        chunk.parsed.push(parsed.ok_or_else(|| stem.clone()));
    }
    chunk
}

/// Reads a file relative to `root` as UTF-8 text, its bytes into `files` for the digest. A
/// missing file is `None`; an unreadable one is reported.
fn read_file(
    root: &Path,
    relative: &Path,
    diags: &mut Diagnostics,
    files: &mut BTreeMap<String, Vec<u8>>,
) -> Option<SourceText> {
    let bytes = match fs::read(root.join(relative)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            diags.file_error(relative, "", format!("cannot read the file: {e}"));
            return None;
        }
    };
    let display = display_path(relative);
    match String::from_utf8(bytes) {
        Ok(text) => {
            files.insert(display, text.as_bytes().to_vec());
            Some(SourceText::new(relative, text))
        }
        Err(e) => {
            files.insert(display, e.into_bytes());
            diags.file_error(
                relative,
                "",
                "the file is not valid UTF-8: save it as UTF-8",
            );
            None
        }
    }
}

/// Whether a file is a README, which any directory of the tree may hold.
pub(super) fn is_readme(name: &str) -> bool {
    name.eq_ignore_ascii_case("README.md") || name.eq_ignore_ascii_case("README")
}

/// The name of a file without its directory and its `.toml` extension.
pub(super) fn file_stem(display: &str) -> &str {
    let name = display.rsplit('/').next().unwrap_or(display);
    name.strip_suffix(".toml").unwrap_or(name)
}

/// Bytes in lowercase hex.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 over every file of the tree, in path order: `path NUL length NUL bytes`.
pub(super) fn digest(files: &BTreeMap<String, Vec<u8>>) -> String {
    let mut h = Sha256::new();
    for (path, bytes) in files {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(bytes.len().to_string().as_bytes());
        h.update([0]);
        h.update(bytes);
    }
    hex(&h.finalize())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::tree::Cx;
    use crate::desired::raw::RawTenant;

    /// Reads `tenants/` of `root` with `threads` threads: each file's outcome (its name, or
    /// `Err(stem)`), the bytes read, and the diagnostics.
    fn read(root: &Path, threads: usize) -> (Vec<Result<String, String>>, String) {
        let mut cx = Cx::new(root);
        let parsed = cx.read_toml_dir_with::<RawTenant>("tenants", Some(threads));
        let outcomes = parsed
            .into_iter()
            .map(|p| p.map(|(src, raw)| format!("{} {}", src.display, raw.slug.get_ref())))
            .collect();
        let diags: Vec<String> = cx
            .diags
            .into_sorted()
            .iter()
            .map(|d| {
                format!(
                    "{}:{}:{} {} {}",
                    d.file, d.line, d.column, d.field, d.message
                )
            })
            .collect();
        let files: Vec<String> = cx
            .files
            .iter()
            .map(|(name, bytes)| format!("{name} {}", bytes.len()))
            .collect();
        (outcomes, format!("{diags:#?}\n{files:#?}"))
    }

    #[test]
    fn a_directory_read_by_several_threads_gives_what_one_thread_gives() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tenants");
        std::fs::create_dir(&dir).unwrap();
        for i in 0..700 {
            let text = match i {
                3 => "slug = \"t003\"\nregion = [\n".to_string(), // A syntax error.
                350 => "slug = \"t350\"\nregion = \"us\"\ncolour = 1\n".to_string(), // Unknown.
                699 => "region = \"us\"\n".to_string(),           // No slug.
                _ => format!("slug = \"t{i:03}\"\nregion = \"us\"\n"),
            };
            std::fs::write(dir.join(format!("t{i:03}.toml")), text).unwrap();
        }
        std::fs::write(dir.join("t400.toml"), b"slug = \"\xff\"\n").unwrap(); // Not UTF-8.
        std::fs::write(dir.join("notes.txt"), "").unwrap(); // Not a TOML file.
        let (one, one_rest) = read(tmp.path(), 1);
        assert_eq!(one.len(), 700);
        assert_eq!(one.iter().filter(|o| o.is_err()).count(), 3, "{one:?}");
        assert!(one_rest.contains("tenants/notes.txt"), "{one_rest}");
        for threads in [2, 3, 8] {
            let (many, many_rest) = read(tmp.path(), threads);
            assert_eq!(one, many, "{threads} threads");
            assert_eq!(one_rest, many_rest, "{threads} threads");
        }
    }
}
