//! The git commit of a desired-state tree, when it lives in a git repository.

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
