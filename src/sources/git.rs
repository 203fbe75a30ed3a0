//! The git commit of a desired-state tree, when it lives in a git repository, and the region
//! files its previous commit had (for `validate`'s warning about a removed region).

use std::path::Path;

/// The commit of `HEAD` in the repository containing `dir`, with `-dirty` appended when files
/// under `dir` differ from it. `None` outside a repository or before the first commit.
pub fn head_commit(dir: &Path) -> Option<String> {
    if !may_be_in_repository(dir) {
        return None;
    }
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
    if !may_be_in_repository(dir) {
        return Vec::new();
    }
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

/// Whether `dir` or a directory above it may hold a git repository: one of them has a `.git`
/// entry (a directory, or a file pointing to one), or is itself a git directory (`HEAD` and
/// `objects`). Checked before [`git2::Repository::discover`], which looks for the same things,
/// because the first call into libgit2 initializes OpenSSL and loads the system's
/// certificates (about 40 ms), a cost a tree outside any repository need not pay.
fn may_be_in_repository(dir: &Path) -> bool {
    let Ok(dir) = dir.canonicalize() else {
        return true; // Let libgit2 decide, as before.
    };
    dir.ancestors().any(|d| {
        d.join(".git").exists() || (d.join("HEAD").is_file() && d.join("objects").is_dir())
    })
}

#[cfg(test)]
mod tests {
    use super::head_commit;

    #[test]
    fn head_commit_is_found_from_a_subdirectory_and_is_none_outside_a_repository() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(outside.path().join("tree")).unwrap();
        assert_eq!(head_commit(&outside.path().join("tree")), None);

        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        std::fs::create_dir(dir.path().join("tree")).unwrap();
        std::fs::write(dir.path().join("tree/neo.toml"), "format_version = 1\n").unwrap();
        let mut index = repo.index().unwrap();
        index
            .add_path(std::path::Path::new("tree/neo.toml"))
            .unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let who = git2::Signature::now("t", "t@example.com").unwrap();
        let commit = repo
            .commit(Some("HEAD"), &who, &who, "tree", &tree, &[])
            .unwrap();
        assert_eq!(
            head_commit(&dir.path().join("tree")),
            Some(commit.to_string())
        );
        std::fs::write(dir.path().join("tree/new.toml"), "").unwrap();
        assert_eq!(
            head_commit(&dir.path().join("tree")),
            Some(format!("{commit}-dirty"))
        );
    }
}
