//! Who runs an apply: the context recorded in the audit trail and the lock holder row.

/// Who runs this apply, for the audit trail and the lock holder row.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The command line, without secrets (neo-reconcile takes none on its command line).
    pub command: String,
    pub host: String,
    pub pid: u32,
    /// The operating-system user.
    pub run_by: String,
    /// The desired state's git commit.
    pub commit: Option<String>,
}

impl RunContext {
    pub fn current(command: String, commit: Option<String>) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown-host".into());
        let run_by = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()
            .or_else(user_from_passwd)
            .unwrap_or_else(|| "unknown-user".into());
        RunContext {
            command,
            host,
            pid: std::process::id(),
            run_by,
            commit,
        }
    }
}

/// The name of this process's user from /etc/passwd (services often have no `$USER`).
fn user_from_passwd() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid).then(|| name.to_string())
    })
}
