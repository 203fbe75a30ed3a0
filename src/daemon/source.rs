//! The daemon's git source: a cache of the repository, fetched on every poll, and a clean
//! checkout of each commit the daemon reconciles.
//!
//! The cache (`<cache_dir>/repo.git`) is a bare repository cloned once and then fetched; the
//! branch's tip is compared with the last commit seen, and a tip that is not a descendant of
//! it (a force-push, a history rewrite) is refused unless `allow_rewind`. Each commit is
//! checked out into a directory of its own (`<cache_dir>/checkouts/<sha>`), a fresh
//! repository that borrows the cache's objects, written from scratch every time, so a working
//! copy someone edited is never reused; `sources::git::head_commit` names that commit, as
//! for a CLI run. Credentials (a deploy key, a token file) go through git2's callbacks, and an
//! SSH server's host key is checked against `known_hosts`. Every function here blocks: the
//! loop runs them on tokio's blocking threads.

use std::path::{Path, PathBuf};

use base64::Engine;
use git2::{CertificateCheckStatus, Cred, CredentialType, FetchOptions, Oid, RemoteCallbacks};

use super::config::{SourceAuth, SourceConfig};

/// What a fetch found on the branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    /// The tip is the commit seen last time.
    Same(String),
    /// A new commit, a descendant of the last one seen (or the first one ever).
    New(String),
    /// The branch moved backwards or sideways and `allow_rewind` is off: refused.
    Rewound { from: String, to: String },
}

/// Why the source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot prepare the cache {dir}: {message}")]
    Cache { dir: String, message: String },
    #[error("cannot fetch branch {branch} from {url}: {message}")]
    Fetch {
        url: String,
        branch: String,
        message: String,
    },
    #[error("cannot check out commit {sha}: {message}")]
    Checkout { sha: String, message: String },
}

/// The repository cache and what was seen of the branch.
#[derive(Debug)]
pub struct Source {
    config: SourceConfig,
    /// The last tip seen (valid or not): the base of the rewind check. Kept in the cache, so a
    /// restart does not forget it.
    seen: Option<String>,
}

impl Source {
    /// Opens (or creates) the cache.
    pub fn open(config: &SourceConfig) -> Result<Source, SourceError> {
        let cache_error = |e: &dyn std::fmt::Display| SourceError::Cache {
            dir: config.cache_dir.display().to_string(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(config.cache_dir.join("checkouts")).map_err(|e| cache_error(&e))?;
        let bare = config.cache_dir.join("repo.git");
        if git2::Repository::open_bare(&bare).is_err() {
            git2::Repository::init_bare(&bare).map_err(|e| cache_error(&e))?;
        }
        let seen = std::fs::read_to_string(config.cache_dir.join("seen"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| Oid::from_str(s).is_ok());
        Ok(Source {
            config: config.clone(),
            seen,
        })
    }

    /// The last tip seen.
    pub fn seen(&self) -> Option<&str> {
        self.seen.as_deref()
    }

    fn repo(&self) -> Result<git2::Repository, git2::Error> {
        git2::Repository::open_bare(self.config.cache_dir.join("repo.git"))
    }

    /// Fetches the branch and compares its tip with the last one seen.
    pub fn fetch(&mut self) -> Result<Fetch, SourceError> {
        let fetch_error = |message: String| SourceError::Fetch {
            url: self.config.url.as_git_url(),
            branch: self.config.branch.clone(),
            message,
        };
        let repo = self.repo().map_err(|e| fetch_error(e.message().into()))?;
        let tip = fetch_tip(&repo, &self.config).map_err(|e| fetch_error(e.message().into()))?;
        let tip_sha = tip.to_string();
        let Some(seen) = self.seen.clone() else {
            self.remember(&tip_sha);
            return Ok(Fetch::New(tip_sha));
        };
        if seen == tip_sha {
            return Ok(Fetch::Same(tip_sha));
        }
        let forward = Oid::from_str(&seen)
            .and_then(|s| repo.graph_descendant_of(tip, s))
            .unwrap_or(false);
        if forward || self.config.allow_rewind {
            if !forward {
                tracing::warn!(from = %seen, to = %tip_sha, "The branch moved backwards or sideways; following it (allow_rewind).");
            }
            self.remember(&tip_sha);
            Ok(Fetch::New(tip_sha))
        } else {
            Ok(Fetch::Rewound {
                from: seen,
                to: tip_sha,
            })
        }
    }

    fn remember(&mut self, sha: &str) {
        self.seen = Some(sha.to_string());
        if let Err(e) = std::fs::write(self.config.cache_dir.join("seen"), sha) {
            tracing::warn!(error = %e, "Cannot record the last commit seen; a restart forgets it.");
        }
    }

    /// Writes a clean checkout of `sha` and returns the desired-state tree's root in it.
    pub fn checkout(&self, sha: &str) -> Result<PathBuf, SourceError> {
        let error = |message: String| SourceError::Checkout {
            sha: sha.to_string(),
            message,
        };
        let dir = self.config.cache_dir.join("checkouts").join(sha);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| error(e.to_string()))?;
        }
        let objects = self.config.cache_dir.join("repo.git").join("objects");
        let objects = objects.canonicalize().map_err(|e| error(e.to_string()))?;
        write_checkout(&dir, &objects, sha).map_err(|e| error(e.message().to_string()))?;
        Ok(if self.config.path.as_os_str().is_empty() {
            dir
        } else {
            dir.join(&self.config.path)
        })
    }

    /// Removes every checkout but those of `keep`.
    pub fn prune(&self, keep: &[&str]) {
        let Ok(entries) = std::fs::read_dir(self.config.cache_dir.join("checkouts")) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name.as_str()) {
                if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!(dir = %entry.path().display(), error = %e, "Cannot remove an old checkout.");
                }
            }
        }
    }

    /// The directory a local source's changes are watched in: its `.git` directory, or the
    /// path itself for a bare repository. `None` for a remote source.
    pub fn watch_dir(&self) -> Option<PathBuf> {
        match &self.config.url {
            super::config::SourceUrl::Local(p) => {
                let git = p.join(".git");
                Some(if git.is_dir() { git } else { p.clone() })
            }
            _ => None,
        }
    }
}

/// A new repository at `dir` that borrows `objects` (the cache's) and has `sha` checked out,
/// detached.
fn write_checkout(dir: &Path, objects: &Path, sha: &str) -> Result<(), git2::Error> {
    let oid = Oid::from_str(sha)?;
    git2::Repository::init(dir)?;
    let alternates = dir.join(".git/objects/info/alternates");
    std::fs::create_dir_all(alternates.parent().expect("a parent"))
        .and_then(|_| std::fs::write(&alternates, format!("{}\n", objects.display())))
        .map_err(|e| git2::Error::from_str(&e.to_string()))?;
    // Opened again, so that the alternates are read.
    let repo = git2::Repository::open(dir)?;
    let commit = repo.find_commit(oid)?;
    let mut checkout = git2::build::CheckoutBuilder::new();
    checkout.force();
    repo.checkout_tree(commit.as_object(), Some(&mut checkout))?;
    repo.set_head_detached(oid)?;
    Ok(())
}

/// Fetches the branch into `refs/remotes/origin/<branch>` and returns its tip.
fn fetch_tip(repo: &git2::Repository, config: &SourceConfig) -> Result<Oid, git2::Error> {
    let branch = &config.branch;
    let target = format!("refs/remotes/origin/{branch}");
    let mut remote = repo.remote_anonymous(&config.url.as_git_url())?;
    let mut options = FetchOptions::new();
    options.remote_callbacks(callbacks(config));
    options.download_tags(git2::AutotagOption::None);
    remote.fetch(
        &[format!("+refs/heads/{branch}:{target}")],
        Some(&mut options),
        None,
    )?;
    repo.refname_to_id(&target)
}

/// The credential and host-key callbacks of a fetch.
fn callbacks(config: &SourceConfig) -> RemoteCallbacks<'static> {
    let mut callbacks = RemoteCallbacks::new();
    let auth = config.auth.clone();
    let mut asked = 0;
    callbacks.credentials(move |_url, username, allowed| {
        // libgit2 asks again after a refused credential: answer once, then give up.
        asked += 1;
        if asked > 1 {
            return Err(git2::Error::from_str("the server refused the credentials"));
        }
        match &auth {
            SourceAuth::SshKey(key) if allowed.contains(CredentialType::SSH_KEY) => {
                Cred::ssh_key(username.unwrap_or("git"), None, key, None)
            }
            SourceAuth::TokenFile(file)
                if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) =>
            {
                let token = std::fs::read_to_string(file).map_err(|e| {
                    git2::Error::from_str(&format!("cannot read {}: {e}", file.display()))
                })?;
                Cred::userpass_plaintext("x-access-token", token.trim())
            }
            _ => Err(git2::Error::from_str(
                "the server asks for credentials: set ssh_key_file or token_file in [source]",
            )),
        }
    });
    if let Some(known_hosts) = config.known_hosts.clone() {
        callbacks.certificate_check(move |cert, host| {
            let Some(hostkey) = cert.as_hostkey().and_then(|h| h.hostkey()) else {
                // Not SSH: TLS certificates are checked by OpenSSL as usual.
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            let text = std::fs::read_to_string(&known_hosts).map_err(|e| {
                git2::Error::from_str(&format!("cannot read {}: {e}", known_hosts.display()))
            })?;
            if known_host(&text, host, hostkey) {
                Ok(CertificateCheckStatus::CertificateOk)
            } else {
                Err(git2::Error::from_str(&format!(
                    "the host key of {host} is not in {}",
                    known_hosts.display()
                )))
            }
        });
    }
    callbacks
}

/// Whether `known_hosts` (OpenSSH's format, plain host names) lists `key` for `host`. Hashed
/// entries (`|1|...`) and markers (`@revoked`, `@cert-authority`) never match.
pub fn known_host(known_hosts: &str, host: &str, key: &[u8]) -> bool {
    known_hosts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (Some(hosts), Some(_kind), Some(encoded)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        if hosts.starts_with('#') || hosts.starts_with('@') || hosts.starts_with('|') {
            return false;
        }
        let names = hosts.split(',').map(|h| {
            h.strip_prefix('[')
                .and_then(|h| h.split_once("]:"))
                .map_or(h, |(name, _port)| name)
        });
        names.into_iter().any(|h| h == host)
            && base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .is_ok_and(|k| k == key)
    })
}

#[cfg(test)]
mod tests {
    use super::super::config::SourceUrl;
    use super::*;

    fn config(url: SourceUrl, cache: &Path, allow_rewind: bool) -> SourceConfig {
        SourceConfig {
            url,
            branch: "main".into(),
            path: PathBuf::from("tree"),
            poll_interval: std::time::Duration::from_secs(60),
            auth: SourceAuth::None,
            known_hosts: None,
            cache_dir: cache.to_path_buf(),
            allow_rewind,
        }
    }

    fn commit(repo: &git2::Repository, file: &str, parent: Option<Oid>) -> Oid {
        let workdir = repo.workdir().unwrap();
        std::fs::create_dir_all(workdir.join("tree")).unwrap();
        std::fs::write(workdir.join("tree/neo.toml"), file).unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new("tree/neo.toml")).unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let parents: Vec<git2::Commit> = parent
            .iter()
            .map(|p| repo.find_commit(*p).unwrap())
            .collect();
        let parents: Vec<&git2::Commit> = parents.iter().collect();
        repo.commit(None, &sig, &sig, file, &tree, &parents)
            .unwrap()
    }

    #[test]
    fn fetches_follow_the_branch_and_refuse_rewinds() {
        let upstream_dir = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let upstream = git2::Repository::init(upstream_dir.path()).unwrap();
        let set = |oid: Oid| {
            upstream
                .reference("refs/heads/main", oid, true, "test")
                .unwrap();
        };
        let one = commit(&upstream, "one", None);
        set(one);
        let url = SourceUrl::Local(upstream_dir.path().to_path_buf());
        let mut source = Source::open(&config(url.clone(), cache.path(), false)).unwrap();
        assert_eq!(source.fetch().unwrap(), Fetch::New(one.to_string()));
        assert_eq!(source.fetch().unwrap(), Fetch::Same(one.to_string()));
        let two = commit(&upstream, "two", Some(one));
        set(two);
        assert_eq!(source.fetch().unwrap(), Fetch::New(two.to_string()));

        // A clean checkout each time: an edit of the previous one does not survive.
        let root = source.checkout(&two.to_string()).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("neo.toml")).unwrap(),
            "two"
        );
        std::fs::write(root.join("neo.toml"), "edited").unwrap();
        let root = source.checkout(&two.to_string()).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("neo.toml")).unwrap(),
            "two"
        );
        assert_eq!(
            crate::sources::git::head_commit(&root),
            Some(two.to_string())
        );

        // Sideways (a rewritten history) is refused, and so after a restart.
        let other = commit(&upstream, "other", Some(one));
        set(other);
        let rewound = Fetch::Rewound {
            from: two.to_string(),
            to: other.to_string(),
        };
        assert_eq!(source.fetch().unwrap(), rewound);
        let mut source = Source::open(&config(url.clone(), cache.path(), false)).unwrap();
        assert_eq!(source.fetch().unwrap(), rewound);
        // Unless allowed.
        let mut source = Source::open(&config(url, cache.path(), true)).unwrap();
        assert_eq!(source.fetch().unwrap(), Fetch::New(other.to_string()));
        source.prune(&[]);
        assert_eq!(
            std::fs::read_dir(cache.path().join("checkouts"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn https_and_ssh_transports_are_built_in() {
        // Nothing listens on port 1: the error is about connecting, not about the scheme.
        for url in [
            SourceUrl::Https("https://127.0.0.1:1/desired.git".into()),
            SourceUrl::Ssh("ssh://git@127.0.0.1:1/desired.git".into()),
        ] {
            let cache = tempfile::tempdir().unwrap();
            let mut source = Source::open(&config(url.clone(), cache.path(), false)).unwrap();
            let err = source.fetch().unwrap_err().to_string();
            assert!(!err.contains("unsupported URL protocol"), "{url:?}: {err}");
            assert!(err.starts_with("cannot fetch branch main from"), "{err}");
        }
    }

    #[test]
    fn known_hosts_match_by_name_and_key() {
        let key = b"ssh-ed25519-key-bytes";
        let encoded = base64::engine::general_purpose::STANDARD.encode(key);
        let file = format!(
            "# comment\n|1|abc|def ssh-ed25519 {encoded}\nother.example ssh-ed25519 {encoded}\ngit.example,[git.example]:2222 ssh-ed25519 {encoded}\n"
        );
        assert!(known_host(&file, "git.example", key));
        assert!(!known_host(&file, "git.example", b"another key"));
        assert!(!known_host(&file, "evil.example", key));
        assert!(!known_host("", "git.example", key));
    }
}
