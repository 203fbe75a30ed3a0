//! The loader's access to the file system, and the only one in `src/desired`: reading a
//! file as text (remembering its bytes for the digest), listing a directory, reading every
//! TOML file of a directory, and the digest over everything read.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::parse::{parse_toml, Required};
use super::tree::Cx;
use crate::desired::diagnostic::SourceText;

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
        let bytes = match fs::read(self.root.join(relative)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                self.diags
                    .file_error(relative, "", format!("cannot read the file: {e}"));
                return None;
            }
        };
        let src = SourceText::new(relative, String::new());
        self.files.insert(src.display.clone(), bytes.clone());
        match String::from_utf8(bytes) {
            Ok(text) => Some(SourceText::new(relative, text)),
            Err(_) => {
                self.diags.file_error(
                    relative,
                    "",
                    "the file is not valid UTF-8: save it as UTF-8",
                );
                None
            }
        }
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
    #[allow(clippy::type_complexity)]
    pub(super) fn read_toml_dir<T: DeserializeOwned + Required>(
        &mut self,
        dir: &str,
    ) -> Vec<Result<(SourceText, T), String>> {
        let mut out = Vec::new();
        for (name, is_dir) in self.list(dir) {
            let relative = Path::new(dir).join(&name);
            let Some(stem) = name.strip_suffix(".toml") else {
                if !is_dir && !is_readme(&name) {
                    self.diags.file_error(
                        &relative,
                        "",
                        format!("unexpected file in {dir}/: only <name>.toml files belong here"),
                    );
                }
                continue;
            };
            let parsed = self
                .read(&relative)
                .and_then(|src| parse_toml::<T>(&src, &mut self.diags).map(|raw| (src, raw)));
            out.push(parsed.ok_or_else(|| stem.to_string()));
        }
        out
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
