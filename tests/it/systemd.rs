//! `systemd/neo-reconcile.service`: the unit passes `systemd-analyze verify` and scores an
//! exposure of 1.5 or lower in `systemd-analyze security --offline=true`.
//!
//! Neither needs a running init. `systemd-analyze` comes from Debian's `systemd` package,
//! which `scripts/setup.sh` installs; when it is missing these tests fail rather than skip, so
//! CI cannot pass without checking the unit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The unit as shipped.
fn unit() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/neo-reconcile.service")
}

fn systemd_analyze(args: &[&str]) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run systemd-analyze ({e}): install Debian's `systemd` package (scripts/setup.sh does)")
        })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    // `verify` checks that every Exec*= command exists and is executable, and the binary is not
    // installed at /usr/bin/neo-reconcile on a build machine. So it verifies a copy of the unit,
    // under the same file name, whose commands point at the binary this build made; nothing
    // else in the copy differs from the shipped unit.
    let shipped = std::fs::read_to_string(unit()).expect("read the unit");
    let built = env!("CARGO_BIN_EXE_neo-reconcile");
    assert!(shipped.contains("/usr/bin/neo-reconcile daemon --config "));
    let copy = shipped.replace("/usr/bin/neo-reconcile", built);
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("neo-reconcile.service");
    std::fs::write(&path, copy).expect("write the copy");

    let out = systemd_analyze(&["verify", path.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    // Complaints about other units of the host are not this unit's business.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("neo-reconcile"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify failed ({}):\n{stderr}{}",
        out.status,
        text(&out.stdout)
    );
}

/// The number on the `Overall exposure level for neo-reconcile.service: 1.1 OK` line.
fn exposure(report: &str) -> Option<f64> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level for neo-reconcile.service"))?;
    let after = line.split(": ").nth(1)?;
    after.split_whitespace().next()?.parse().ok()
}

#[test]
fn unit_exposure_is_at_most_1_5() {
    let unit = unit();
    let out = systemd_analyze(&[
        "security",
        "--offline=true",
        "--threshold=15",
        unit.to_str().unwrap(),
    ]);
    let report = text(&out.stdout) + &text(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze security failed ({}):\n{report}",
        out.status
    );
    let score = exposure(&report).unwrap_or_else(|| panic!("no exposure line in:\n{report}"));
    eprintln!("neo-reconcile.service exposure: {score}");
    assert!(score <= 1.5, "exposure {score} is above 1.5:\n{report}");
}

#[test]
fn exposure_line_parses() {
    let line = "→ Overall exposure level for neo-reconcile.service: 1.1 OK 🙂";
    assert_eq!(exposure(line), Some(1.1));
    assert_eq!(exposure("nothing here"), None);
}

#[test]
fn unit_has_what_the_daemon_relies_on() {
    let shipped = std::fs::read_to_string(unit()).expect("read the unit");
    let lines: Vec<&str> = shipped.lines().map(str::trim).collect();
    for wanted in [
        "Type=notify",
        "ExecStartPre=/usr/bin/neo-reconcile daemon --check-config /etc/neo-reconcile/config.toml",
        "ExecStart=/usr/bin/neo-reconcile daemon --config /etc/neo-reconcile/config.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "DynamicUser=yes",
        "StateDirectory=neo-reconcile",
        "LoadCredential=vault-secret-id:/etc/neo-reconcile/credentials/vault-secret-id",
        "LoadCredential=vault-role-id:/etc/neo-reconcile/credentials/vault-role-id",
        "LoadCredential=git-deploy-key:/etc/neo-reconcile/credentials/git-deploy-key",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=yes",
        "UMask=0077",
    ] {
        assert!(lines.contains(&wanted), "the unit lacks `{wanted}`");
    }
    assert!(lines.iter().any(|l| l.starts_with("WatchdogSec=")));
}
