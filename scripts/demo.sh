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
