//! The daemon's configuration file, `/etc/neo-reconcile/config.toml` by default.
//!
//! [`RawConfig`] mirrors the file with `deny_unknown_fields` and spanned values; [`parse`]
//! reads it with the desired state's parser (every syntax error, unknown key and wrong type,
//! all at once) and then checks every value, so that one run reports every problem with
//! file:line:column. The result is a validated [`Config`]. Secrets never appear in the file:
//! it names files that hold them (a deploy key, a token, Vault's AppRole secret ID).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::desired::diagnostic::{Diagnostics, SourceText};
use crate::desired::{parse_duration, parse_toml_with, Diagnostic, Required};
use crate::sources::vault::config::{RawVault, VaultConfig};

/// Where the configuration is read from when no `--config` is given.
pub const DEFAULT_PATH: &str = "/etc/neo-reconcile/config.toml";
/// The cache directory when systemd gives no `STATE_DIRECTORY`.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/neo-reconcile";
/// Where the HTTP endpoints listen by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9187";
/// How often the source is polled by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// The file as serde reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub source: Spanned<RawSource>,
    #[serde(default)]
    pub reconcile: Option<RawReconcile>,
    #[serde(default)]
    pub vault: Option<Spanned<RawVault>>,
    #[serde(default)]
    pub http: Option<RawHttp>,
}

/// `[source]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub url: Spanned<String>,
    pub branch: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub poll_interval: Option<Spanned<String>>,
    pub ssh_key_file: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
    pub known_hosts: Option<Spanned<String>>,
    pub cache_dir: Option<Spanned<String>>,
    pub allow_rewind: Option<bool>,
}

/// `[reconcile]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReconcile {
    pub auto_apply: Option<bool>,
    pub resync: Option<Spanned<String>>,
    #[serde(default)]
    pub windows: BTreeMap<String, RawWindow>,
}

/// `[reconcile.windows.<region>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    pub kind: Spanned<String>,
    pub schedule: Spanned<String>,
    pub duration: Spanned<String>,
    pub timezone: Option<Spanned<String>>,
}

/// `[http]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<Spanned<String>>,
}

impl Required for RawConfig {
    // A window's keys are not listed: a path through an optional table would report the
    // table missing. Serde reports the first missing key of a window.
    const REQUIRED: &'static [&'static str] = &["source", "source.url"];
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    pub source: SourceConfig,
    pub reconcile: ReconcileConfig,
    pub vault: Option<VaultConfig>,
    pub listen: SocketAddr,
}

/// Where the desired state comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    pub url: SourceUrl,
    pub branch: String,
    /// The desired-state tree's directory inside the repository (empty: the root).
    pub path: PathBuf,
    pub poll_interval: Duration,
    pub auth: SourceAuth,
    pub known_hosts: Option<PathBuf>,
    pub cache_dir: PathBuf,
    pub allow_rewind: bool,
}

/// The repository's location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceUrl {
    /// A local path (or a `file://` URL): watched for changes as well as polled.
    Local(PathBuf),
    Https(String),
    Ssh(String),
}

impl SourceUrl {
    /// The URL git2 fetches from.
    pub fn as_git_url(&self) -> String {
        match self {
            SourceUrl::Local(p) => p.display().to_string(),
            SourceUrl::Https(u) | SourceUrl::Ssh(u) => u.clone(),
        }
    }
}

/// How the daemon authenticates to the repository; secrets stay in their files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceAuth {
    None,
    /// An SSH deploy key (private key file).
    SshKey(PathBuf),
    /// An HTTPS token, read from this file at each fetch.
    TokenFile(PathBuf),
}

/// When and how to reconcile.
#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    /// Off: detect-only (plan, log, report, change nothing).
    pub auto_apply: bool,
    /// A full reconcile without a new commit, to put drift back.
    pub resync: Option<cron::Schedule>,
    /// Maintenance windows by region.
    pub windows: BTreeMap<String, Vec<Window>>,
}

/// Whether a window allows or forbids apply while it is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Allow,
    Deny,
}

/// A maintenance window: it opens at each fire of `schedule` (in `timezone`) and stays open
/// for `duration`.
#[derive(Debug, Clone)]
pub struct Window {
    pub kind: WindowKind,
    pub schedule: cron::Schedule,
    pub duration: Duration,
    pub timezone: chrono_tz::Tz,
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration {file}: {message}")]
    Unreadable { file: String, message: String },
    #[error("{file} is not a valid configuration ({} error(s)):\n{}", .diagnostics.len(), render(.diagnostics))]
    Invalid {
        file: String,
        diagnostics: Vec<Diagnostic>,
    },
}

fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads and validates the file at `file`; the cache directory defaults to systemd's
/// `STATE_DIRECTORY` (its first entry) when set.
pub fn load(file: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError::Unreadable {
        file: file.display().to_string(),
        message: e.to_string(),
    })?;
    let state_dir = std::env::var("STATE_DIRECTORY").ok();
    parse(file, text, state_dir.as_deref())
}

/// Validates `text`, the content of `file`. Relative paths in it are relative to the file's
/// directory.
pub fn parse(file: &Path, text: String, state_dir: Option<&str>) -> Result<Config, ConfigError> {
    let mut src = SourceText::new(file, text);
    // Shown as given (an absolute path stays one).
    src.display = file.display().to_string();
    let mut diags = Diagnostics::default();
    let raw: Option<RawConfig> = parse_toml_with(&src, &mut diags, false);
    let base = file.parent().unwrap_or(Path::new("."));
    let mut cx = Check {
        src: &src,
        diags,
        base,
    };
    let config = raw.and_then(|raw| cx.config(file, raw, state_dir));
    let diagnostics = cx.diags.into_sorted();
    match config {
        Some(c) if diagnostics.is_empty() => Ok(c),
        _ => Err(ConfigError::Invalid {
            file: file.display().to_string(),
            diagnostics,
        }),
    }
}

/// The checks of one file, collecting diagnostics.
struct Check<'a> {
    src: &'a SourceText,
    diags: Diagnostics,
    base: &'a Path,
}

impl Check<'_> {
    fn error(&mut self, span: Range<usize>, field: &str, message: impl Into<String>) {
        self.diags.error(self.src, span, field, message);
    }

    fn config(&mut self, file: &Path, raw: RawConfig, state_dir: Option<&str>) -> Option<Config> {
        let source = self.source(raw.source.into_inner(), state_dir);
        let reconcile = self.reconcile(raw.reconcile);
        let vault = raw.vault.and_then(|v| {
            let span = v.span();
            match VaultConfig::from_raw(v.into_inner(), None) {
                Ok(c) => Some(Some(c)),
                Err(e) => {
                    self.error(span, "vault", e.to_string());
                    None
                }
            }
        });
        let vault = vault.unwrap_or(None);
        let listen = match raw.http.and_then(|h| h.listen) {
            None => DEFAULT_LISTEN.parse().ok(),
            Some(l) => match l.get_ref().parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.error(
                        l.span(),
                        "http.listen",
                        format!(
                            "{:?} is not an address and port such as \"127.0.0.1:9187\"",
                            l.get_ref()
                        ),
                    );
                    None
                }
            },
        };
        Some(Config {
            file: file.to_path_buf(),
            source: source?,
            reconcile: reconcile?,
            vault,
            listen: listen?,
        })
    }

    fn path(&self, value: &str) -> PathBuf {
        self.base.join(value)
    }

    fn source(&mut self, raw: RawSource, state_dir: Option<&str>) -> Option<SourceConfig> {
        let url = self.url(&raw.url);
        let branch = match &raw.branch {
            None => Some("main".to_string()),
            Some(b) if git2::Branch::name_is_valid(b.get_ref()).unwrap_or(false) => {
                Some(b.get_ref().clone())
            }
            Some(b) => {
                self.error(
                    b.span(),
                    "source.branch",
                    format!("{:?} is not a valid branch name", b.get_ref()),
                );
                None
            }
        };
        let path = match &raw.path {
            None => Some(PathBuf::new()),
            Some(p) => {
                let rel = Path::new(p.get_ref().trim_matches('/'));
                let ok = rel
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)));
                if !ok {
                    self.error(
                        p.span(),
                        "source.path",
                        "the tree's directory inside the repository must be a relative path without `..`",
                    );
                }
                ok.then(|| rel.to_path_buf())
            }
        };
        let poll_interval = self.duration(
            raw.poll_interval.as_ref(),
            "source.poll_interval",
            DEFAULT_POLL_INTERVAL,
        );
        let auth = self.auth(&raw, url.as_ref());
        let cache_dir = match &raw.cache_dir {
            Some(d) => self.path(d.get_ref()),
            None => state_dir
                .and_then(|s| s.split(':').next())
                .filter(|s| !s.is_empty())
                .map_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR), PathBuf::from),
        };
        Some(SourceConfig {
            url: url?,
            branch: branch?,
            path: path?,
            poll_interval: poll_interval?,
            auth: auth?,
            known_hosts: raw.known_hosts.as_ref().map(|k| self.path(k.get_ref())),
            cache_dir,
            allow_rewind: raw.allow_rewind.unwrap_or(false),
        })
    }

    fn url(&mut self, url: &Spanned<String>) -> Option<SourceUrl> {
        let u = url.get_ref();
        let scheme = u.split_once("://").map(|(s, _)| s);
        let authority = u.split_once("://").map_or("", |(_, r)| r);
        let authority = authority.split('/').next().unwrap_or("");
        if authority
            .rsplit_once('@')
            .is_some_and(|(user, _)| user.contains(':'))
        {
            self.error(url.span(), "source.url", "this URL embeds a password: put a token in a file and name it with token_file; rotate the one in this file");
            return None;
        }
        match scheme {
            Some("https") => Some(SourceUrl::Https(u.clone())),
            Some("ssh") => Some(SourceUrl::Ssh(u.clone())),
            Some("file") => Some(SourceUrl::Local(PathBuf::from(&u["file://".len()..]))),
            Some(other) => {
                self.error(
                    url.span(),
                    "source.url",
                    format!("unsupported scheme {other:?}: use https://, ssh://, file:// or a local path"),
                );
                None
            }
            None if u.is_empty() => {
                self.error(url.span(), "source.url", "the repository's URL is empty");
                None
            }
            // The scp-like form of SSH: `git@host:org/repo.git`.
            None if !u.starts_with('/') && u.split('/').next().is_some_and(|h| h.contains(':')) => {
                Some(SourceUrl::Ssh(u.clone()))
            }
            None => Some(SourceUrl::Local(self.path(u))),
        }
    }

    fn auth(&mut self, raw: &RawSource, url: Option<&SourceUrl>) -> Option<SourceAuth> {
        let mut ok = true;
        let mut wrong = |cx: &mut Self, v: &Spanned<String>, field: &str, needs: &str| {
            cx.error(
                v.span(),
                field,
                format!("{field} is only used with {needs} URLs; remove it"),
            );
            ok = false;
        };
        let is_ssh = matches!(url, Some(SourceUrl::Ssh(_)));
        let is_https = matches!(url, Some(SourceUrl::Https(_)));
        if let (Some(v), Some(false)) = (&raw.ssh_key_file, url.map(|_| is_ssh)) {
            wrong(self, v, "source.ssh_key_file", "ssh://");
        }
        if let (Some(v), Some(false)) = (&raw.known_hosts, url.map(|_| is_ssh)) {
            wrong(self, v, "source.known_hosts", "ssh://");
        }
        if let (Some(v), Some(false)) = (&raw.token_file, url.map(|_| is_https)) {
            wrong(self, v, "source.token_file", "https://");
        }
        if !ok || url.is_none() {
            return None;
        }
        Some(match (&raw.ssh_key_file, &raw.token_file) {
            (Some(k), _) => SourceAuth::SshKey(self.path(k.get_ref())),
            (None, Some(t)) => SourceAuth::TokenFile(self.path(t.get_ref())),
            (None, None) => SourceAuth::None,
        })
    }

    fn duration(
        &mut self,
        value: Option<&Spanned<String>>,
        field: &str,
        default: Duration,
    ) -> Option<Duration> {
        let Some(v) = value else {
            return Some(default);
        };
        let parsed = parse_duration(v.get_ref());
        if parsed.is_none() {
            self.error(
                v.span(),
                field,
                format!(
                    "{:?} is not a duration: a positive whole number and a unit (ms, s, min, h, d), such as \"60s\"",
                    v.get_ref()
                ),
            );
        }
        parsed
    }

    fn cron(&mut self, value: &Spanned<String>, field: &str) -> Option<cron::Schedule> {
        match parse_cron(value.get_ref()) {
            Ok(s) => Some(s),
            Err(e) => {
                // The crate's message draws a caret under the expression; its last line says why.
                let e = e.to_string();
                let e = e.lines().last().unwrap_or_default().trim().to_string();
                self.error(value.span(), field, format!("{:?} is not a cron expression ({e}): five fields (minute hour day-of-month month day-of-week), or six with seconds first", value.get_ref()));
                None
            }
        }
    }

    fn reconcile(&mut self, raw: Option<RawReconcile>) -> Option<ReconcileConfig> {
        let Some(raw) = raw else {
            return Some(ReconcileConfig {
                auto_apply: false,
                resync: None,
                windows: BTreeMap::new(),
            });
        };
        let resync = match &raw.resync {
            None => Some(None),
            Some(r) => self.cron(r, "reconcile.resync").map(Some),
        };
        let mut windows = BTreeMap::new();
        let mut ok = true;
        for (region, w) in raw.windows {
            match self.window(&region, w) {
                Some(w) => {
                    windows.insert(region, vec![w]);
                }
                None => ok = false,
            }
        }
        Some(ReconcileConfig {
            auto_apply: raw.auto_apply.unwrap_or(false),
            resync: resync?,
            windows: if ok { windows } else { return None },
        })
    }

    fn window(&mut self, region: &str, raw: RawWindow) -> Option<Window> {
        let field = |f: &str| format!("reconcile.windows.{region}.{f}");
        let kind = match raw.kind.get_ref().as_str() {
            "allow" => Some(WindowKind::Allow),
            "deny" => Some(WindowKind::Deny),
            other => {
                self.error(
                    raw.kind.span(),
                    &field("kind"),
                    format!("unknown window kind {other:?}: use \"allow\" or \"deny\""),
                );
                None
            }
        };
        let schedule = self.cron(&raw.schedule, &field("schedule"));
        let duration = self.duration(Some(&raw.duration), &field("duration"), Duration::ZERO);
        let timezone = match &raw.timezone {
            None => Some(chrono_tz::UTC),
            Some(t) => match chrono_tz::Tz::from_str(t.get_ref()) {
                Ok(tz) => Some(tz),
                Err(_) => {
                    self.error(
                        t.span(),
                        &field("timezone"),
                        format!(
                            "unknown time zone {:?}: use an IANA name such as \"Europe/Paris\"",
                            t.get_ref()
                        ),
                    );
                    None
                }
            },
        };
        Some(Window {
            kind: kind?,
            schedule: schedule?,
            duration: duration?,
            timezone: timezone?,
        })
    }
}

/// A cron expression: the `cron` crate's six or seven fields (seconds first), or the usual
/// five (minute first), read as firing at second 0.
pub fn parse_cron(text: &str) -> Result<cron::Schedule, cron::error::Error> {
    let fields = text.split_whitespace().count();
    if fields == 5 {
        cron::Schedule::from_str(&format!("0 {text}"))
    } else {
        cron::Schedule::from_str(text)
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
