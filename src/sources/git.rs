//! The git commit of a desired-state tree, when it lives in a git repository, and the region
//! files its previous commit had (for `validate`'s warning about a removed region).

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

/// The region files (`regions/<name>.toml`) the repository's previous state of the tree at
/// `dir` had and the tree no longer has: first against `HEAD` (a removal not committed yet),
/// else against `HEAD`'s first parent (the commit under review; on a pull request's merge
/// commit, the base branch). Each as `(file, commit)`, the commit abbreviated. Empty outside a
/// repository or when there is nothing to compare with.
pub fn removed_region_files(dir: &Path) -> Vec<(String, String)> {
    let Ok(repo) = git2::Repository::discover(dir) else {
        return Vec::new();
    };
    let Some(prefix) = repo
        .workdir()
        .and_then(|w| w.canonicalize().ok())
        .zip(dir.canonicalize().ok())
        .and_then(|(w, d)| d.strip_prefix(&w).ok().map(Path::to_path_buf))
    else {
        return Vec::new();
    };
    let Ok(head) = repo.head().and_then(|h| h.peel_to_commit()) else {
        return Vec::new();
    };
    let removed_since = |commit: &git2::Commit| -> Vec<(String, String)> {
        let Ok(tree) = commit.tree() else {
            return Vec::new();
        };
        let Ok(entry) = tree.get_path(&prefix.join("regions")) else {
            return Vec::new();
        };
        let Ok(regions) = entry.to_object(&repo).and_then(|o| o.peel_to_tree()) else {
            return Vec::new();
        };
        let short = commit.id().to_string()[..12].to_string();
        regions
            .iter()
            .filter_map(|e| e.name().map(str::to_string))
            .filter(|name| name.ends_with(".toml"))
            .filter(|name| !dir.join("regions").join(name).exists())
            .map(|name| (format!("regions/{name}"), short.clone()))
            .collect()
    };
    let removed = removed_since(&head);
    if !removed.is_empty() {
        return removed;
    }
    head.parent(0)
        .map(|parent| removed_since(&parent))
        .unwrap_or_default()
}
