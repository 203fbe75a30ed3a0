//! The git commit of a desired-state tree, when it lives in a git repository.

use std::path::Path;

/// The commit of `HEAD` in the repository containing `dir`, with `-dirty` appended when files
/// under `dir` differ from it. `None` outside a repository or before the first commit.
pub fn head_commit(dir: &Path) -> Option<String> {
    let repo = git2::Repository::discover(dir).ok()?;
    let commit = repo.head().ok()?.peel_to_commit().ok()?.id().to_string();
    let workdir = repo.workdir()?.canonicalize().ok()?;
    let dir = dir.canonicalize().ok()?;
    let prefix = dir
        .strip_prefix(&workdir)
        .ok()?
        .to_string_lossy()
        .into_owned();
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true).recurse_untracked_dirs(true);
    if !prefix.is_empty() {
        opts.pathspec(&prefix);
    }
    let dirty = repo
        .statuses(Some(&mut opts))
        .ok()?
        .iter()
        .any(|s| s.status() != git2::Status::CURRENT && s.status() != git2::Status::IGNORED);
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}
