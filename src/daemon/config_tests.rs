//! Table-driven tests of the configuration: each case is a file and the rendered result.

use super::*;

/// Parses `text` as `/etc/neo-reconcile/config.toml` and renders the result: the validated
/// configuration's salient values, or every diagnostic, one a line.
fn render_result(text: &str) -> String {
    match parse(
        Path::new("/etc/neo-reconcile/config.toml"),
        text.to_string(),
        Some("/var/lib/neo-reconcile-state"),
    ) {
        Ok(c) => format!(
            "ok: url={:?} branch={} path={:?} poll={:?} auth={:?} cache={} rewind={} auto_apply={} resync={} windows={} vault={} listen={}",
            c.source.url,
            c.source.branch,
            c.source.path,
            c.source.poll_interval,
            c.source.auth,
            c.source.cache_dir.display(),
            c.source.allow_rewind,
            c.reconcile.auto_apply,
            c.reconcile.resync.as_ref().map_or("-", |s| s.source()),
            c.reconcile
                .windows
                .iter()
                .map(|(r, w)| format!("{r}:{:?}/{}/{:?}/{}", w[0].kind, w[0].schedule.source(), w[0].duration, w[0].timezone))
                .collect::<Vec<_>>()
                .join(","),
            c.vault.is_some(),
            c.listen,
        ),
        Err(ConfigError::Invalid { diagnostics, .. }) => diagnostics
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("{e}"),
    }
}

fn check(text: &str, expect: &str) {
    let got = render_result(text);
    assert_eq!(
        got,
        expect.trim(),
        "\n--- config ---\n{text}\n--- got ---\n{got}\n"
    );
}

#[test]
fn configurations_and_their_diagnostics() {
    // The smallest configuration: defaults everywhere.
    check(
        "[source]\nurl = \"/srv/desired\"\n",
        r#"ok: url=Local("/srv/desired") branch=main path="" poll=60s auth=None cache=/var/lib/neo-reconcile-state rewind=false auto_apply=false resync=- windows= vault=false listen=127.0.0.1:9187"#,
    );
    // Everything set; relative paths are relative to the file's directory.
    check(
        r#"
[source]
url = "ssh://git@git.example.com/infra/desired.git"
branch = "release"
path = "desired-state/"
poll_interval = "2min"
ssh_key_file = "deploy_key"
known_hosts = "/etc/ssh/ssh_known_hosts"
cache_dir = "/var/cache/neo"
allow_rewind = true

[reconcile]
auto_apply = true
resync = "*/30 * * * *"

[reconcile.windows.eu-west]
kind = "allow"
schedule = "0 22 * * Mon-Fri"
duration = "4h"
timezone = "Europe/Paris"

[vault]
address = "https://vault.internal:8200"
[vault.approle]
role_id_file = "/etc/neo-reconcile/role-id"
secret_id_file = "/run/credentials/neo-reconcile.service/secret-id"

[http]
listen = "0.0.0.0:9100"
"#,
        r#"ok: url=Ssh("ssh://git@git.example.com/infra/desired.git") branch=release path="desired-state" poll=120s auth=SshKey("/etc/neo-reconcile/deploy_key") cache=/var/cache/neo rewind=true auto_apply=true resync=0 */30 * * * * windows=eu-west:Allow/0 0 22 * * Mon-Fri/14400s/Europe/Paris vault=true listen=0.0.0.0:9100"#,
    );
    check(
        "[source]\nurl = \"file:///srv/repo\"\n",
        r#"ok: url=Local("/srv/repo") branch=main path="" poll=60s auth=None cache=/var/lib/neo-reconcile-state rewind=false auto_apply=false resync=- windows= vault=false listen=127.0.0.1:9187"#,
    );
    check(
        "[source]\nurl = \"git@github.com:org/desired.git\"\n[http]\n",
        r#"ok: url=Ssh("git@github.com:org/desired.git") branch=main path="" poll=60s auth=None cache=/var/lib/neo-reconcile-state rewind=false auto_apply=false resync=- windows= vault=false listen=127.0.0.1:9187"#,
    );
    // Every problem at once, each with file:line:column.
    check(
        r#"
[source]
url = "https://bot:hunter2@git.example.com/desired.git"
brnach = "main"
poll_interval = "soon"
allow_rewind = "yes"

[reconcile]
resync = "every day"

[reconcile.windows.eu]
kind = "maybe"
schedule = "0 25 * * *"
duration = "4 hours"
timezone = "Mars/Olympus"

[http]
listen = "localhost"
port = 9187
"#,
        r#"
/etc/neo-reconcile/config.toml:3:7: error: source.url: this URL embeds a password: put a token in a file and name it with token_file; rotate the one in this file
/etc/neo-reconcile/config.toml:4:1: error: source.brnach: unknown field `brnach`, expected one of `url`, `branch`, `path`, `poll_interval`, `ssh_key_file`, `token_file`, `known_hosts`, `cache_dir`, `allow_rewind`; fix the spelling or remove it (unknown fields are never ignored)
/etc/neo-reconcile/config.toml:5:17: error: source.poll_interval: "soon" is not a duration: a positive whole number and a unit (ms, s, min, h, d), such as "60s"
/etc/neo-reconcile/config.toml:6:16: error: source.allow_rewind: wrong type: invalid type: string "yes", expected a boolean
/etc/neo-reconcile/config.toml:9:10: error: reconcile.resync: "every day" is not a cron expression (The 'Seconds' field does not support using names. 'every' specified.): five fields (minute hour day-of-month month day-of-week), or six with seconds first
/etc/neo-reconcile/config.toml:12:8: error: reconcile.windows.eu.kind: unknown window kind "maybe": use "allow" or "deny"
/etc/neo-reconcile/config.toml:13:12: error: reconcile.windows.eu.schedule: "0 25 * * *" is not a cron expression (Hours must be less than 23. ('25' specified.)): five fields (minute hour day-of-month month day-of-week), or six with seconds first
/etc/neo-reconcile/config.toml:14:12: error: reconcile.windows.eu.duration: "4 hours" is not a duration: a positive whole number and a unit (ms, s, min, h, d), such as "60s"
/etc/neo-reconcile/config.toml:15:12: error: reconcile.windows.eu.timezone: unknown time zone "Mars/Olympus": use an IANA name such as "Europe/Paris"
/etc/neo-reconcile/config.toml:18:10: error: http.listen: "localhost" is not an address and port such as "127.0.0.1:9187"
/etc/neo-reconcile/config.toml:19:1: error: http.port: unknown field `port`, expected `listen`; fix the spelling or remove it (unknown fields are never ignored)
"#,
    );
    // Missing required keys, a secret file for the wrong transport, an unknown scheme.
    check(
        "[reconcile]\nauto_apply = true\n[reconcile.windows.us]\nkind = \"deny\"\n",
        r#"
/etc/neo-reconcile/config.toml:1:1: error: source: missing required field `source`: add it
"#,
    );
    check(
        "[source]\nurl = \"/r\"\n[reconcile.windows.us]\nkind = \"deny\"\n",
        "/etc/neo-reconcile/config.toml:3:1: error: missing field `schedule`: add it",
    );
    check(
        "[source]\nurl = \"/srv/repo\"\ntoken_file = \"/etc/tok\"\nknown_hosts = \"kh\"\n",
        r#"
/etc/neo-reconcile/config.toml:3:14: error: source.token_file: source.token_file is only used with https:// URLs; remove it
/etc/neo-reconcile/config.toml:4:15: error: source.known_hosts: source.known_hosts is only used with ssh:// URLs; remove it
"#,
    );
    check(
        "[source]\nurl = \"ftp://host/repo\"\n[vault]\naddress = \"vault:8200\"\n",
        r#"
/etc/neo-reconcile/config.toml:2:7: error: source.url: unsupported scheme "ftp": use https://, ssh://, file:// or a local path
/etc/neo-reconcile/config.toml:3:1: error: vault: Vault's address "vault:8200" is not an http:// or https:// URL
"#,
    );
    check(
        "[source\nurl = 1\n",
        "/etc/neo-reconcile/config.toml:1:8: error: source: TOML syntax error: unclosed table, expected `]`",
    );
}

#[test]
fn the_example_configuration_is_valid() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/config.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    if let Err(e) = parse(&file, text, None) {
        panic!("{e}");
    }
}
