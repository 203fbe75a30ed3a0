#!/usr/bin/env bash
# The main job, end to end on this machine: starts two throwaway PostgreSQL 15 clusters
# (us-east on 127.0.0.1:55432, eu-west on 127.0.0.1:55433, as desired-state/ says), each with a
# least-privilege login role, then runs neo-reconcile against the example desired-state/:
# validate, plan, apply, and plan again (which shows no changes). The clusters are stopped and
# removed at the end. Passwords are generated per run and passed through the environment and
# standard input only, never on a command line.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --locked --quiet
bin=target/debug/neo-reconcile
pg_bin=/usr/lib/postgresql/15/bin

work="$PWD/.neo-demo"
as_pg=()
[ "$(id -u)" -eq 0 ] && as_pg=(runuser -u postgres --)

stop_all() {
  if [ -n "${daemon_pid:-}" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  for name in us-east eu-west; do
    [ -f "$work/$name/data/postmaster.pid" ] && "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/$name/data" -m fast -w stop >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
stop_all
trap stop_all EXIT
mkdir -p "$work"
chmod 755 "$work"

start_cluster() { # name port database env-prefix
  local name=$1 port=$2 db=$3 prefix=$4 dir="$work/$1"
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
  "${as_pg[@]}" "$pg_bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c fsync=off" start >/dev/null
  local password
  password=$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
  # The migrator is not a superuser: it creates roles and owns the region database.
  "${as_pg[@]}" "$pg_bin/psql" -X -q -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 <<SQL
CREATE ROLE neo_migrator LOGIN CREATEROLE CREATEDB PASSWORD '$password';
CREATE DATABASE $db OWNER neo_migrator;
SQL
  export "${prefix}_USER=neo_migrator" "${prefix}_PASSWORD=$password"
  echo "== started $name: PostgreSQL on 127.0.0.1:$port, database $db, login neo_migrator"
}
start_cluster us-east 55432 neo_us NEO_US_EAST
start_cluster eu-west 55433 neo_eu NEO_EU_WEST

run() { echo; echo "\$ neo-reconcile $*"; "$bin" "$@"; }

run validate desired-state
# --detailed-exitcode: 2 means changes are pending, as expected on fresh clusters.
set +e
run plan desired-state --detailed-exitcode
code=$?
set -e
[ "$code" -eq 2 ] || { echo "expected pending changes (exit 2), got $code" >&2; exit 1; }
run apply desired-state --auto-approve
run plan desired-state --detailed-exitcode
echo
echo "== the registry other services read (control plane us-east, database neo_admin):"
"${as_pg[@]}" "$pg_bin/psql" -X -h "$work/us-east" -p 55432 -U postgres -d neo_admin \
  -c "SELECT tenant_slug, region, host, port, database_name, schema_name, status, schema_versions FROM admin.database_connections ORDER BY tenant_slug"
echo "== the audit trail (us-east):"
"${as_pg[@]}" "$pg_bin/psql" -X -h "$work/us-east" -p 55432 -U postgres -d neo_us \
  -c "SELECT id, outcome, run_by, host, left(desired_digest, 12) AS digest, started_at FROM neo_reconcile.runs ORDER BY id" \
  -c "SELECT target_schema, schema_set, count(*) AS versions, max(version) AS at FROM neo_reconcile.schema_history WHERE success GROUP BY 1, 2 ORDER BY 1, 2"

# The daemon: after a merge nobody runs anything; the daemon follows the branch and converges.
# Here the branch is a local git repository holding the same tree, and the daemon polls it
# every 2 s (and watches it), applies each new commit, and serves /healthz, /readyz, /metrics
# and /status on 127.0.0.1:59187. Credentials come from the same environment variables.
echo
echo "== the daemon follows a git repository of the desired state"
repo="$work/repo"
mkdir -p "$repo"
cp -r desired-state/. "$repo/"
git -C "$repo" init -q -b main
git -C "$repo" add -A
git -C "$repo" -c user.name=demo -c user.email=demo@localhost commit -qm "the desired state"
cat >"$work/daemon.toml" <<TOML
[source]
url = "$repo"
branch = "main"
poll_interval = "2s"
cache_dir = "$work/daemon-cache"

[reconcile]
auto_apply = true
resync = "*/10 * * * *"

[http]
listen = "127.0.0.1:59187"
TOML
run daemon --check-config "$work/daemon.toml"
echo "\$ neo-reconcile daemon --config $work/daemon.toml   (in the background, log in $work/daemon.log)"
"$bin" daemon --config "$work/daemon.toml" 2>"$work/daemon.log" &
daemon_pid=$!

http_get() {
  python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
    "http://127.0.0.1:59187$1"
}
wait_until() { # what, then a command that succeeds once it is so
  local what=$1
  shift
  for _ in $(seq 1 240); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "timed out waiting for $what; the daemon's log:" >&2
  tail -40 "$work/daemon.log" >&2
  exit 1
}
wait_until "the daemon's first reconcile (/readyz)" http_get /readyz

echo "== a commit adds tenant initrode in eu-west; nobody runs anything, the daemon applies it"
cat >"$repo/tenants/initrode.toml" <<'TOML'
# Initrode: added by a merged pull request; the daemon creates and migrates it.
slug = "initrode"
region = "eu-west"
residency = "EU"
status = "active"
TOML
git -C "$repo" add -A
git -C "$repo" -c user.name=demo -c user.email=demo@localhost commit -qm "add tenant initrode"
sha=$(git -C "$repo" rev-parse HEAD)
echo "committed $sha"
tenant_at_commit() {
  [ "$("${as_pg[@]}" "$pg_bin/psql" -X -At -h "$work/eu-west" -p 55433 -U postgres -d neo_eu \
    -c "SELECT count(*) FROM neo_reconcile.tenants WHERE slug = 'initrode' AND git_commit = '$sha'")" = 1 ]
}
wait_until "tenant initrode applied at $sha" tenant_at_commit
echo "== applied; the run rows carry the commit:"
"${as_pg[@]}" "$pg_bin/psql" -X -h "$work/eu-west" -p 55433 -U postgres -d neo_eu \
  -c "SELECT id, outcome, left(git_commit, 12) AS commit, command FROM neo_reconcile.runs ORDER BY id" \
  -c "SELECT target_schema, max(version) AS at FROM neo_reconcile.schema_history WHERE success AND target_schema = 'tenant_initrode' GROUP BY 1"
echo "== GET /status (excerpt):"
http_get /status | python3 -c 'import json, sys; s = json.load(sys.stdin); print(json.dumps({k: s[k] for k in list(s)[:8]}, indent=2))'
echo "== GET /metrics (reconcile runs):"
http_get /metrics | grep '^neo_reconcile_reconcile_runs_total' || true
echo "== SIGTERM: the daemon stops at a safe point and exits 0"
kill -TERM "$daemon_pid"
set +e
wait "$daemon_pid"
code=$?
set -e
daemon_pid=
echo "daemon exit code: $code"
grep -c "$sha" "$work/daemon.log" | xargs -I{} echo "{} log lines of the daemon name commit $sha"
[ "$code" -eq 0 ]
