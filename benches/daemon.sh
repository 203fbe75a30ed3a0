#!/usr/bin/env bash
# Daemon resource use (issue 12): what `neo-reconcile daemon` costs when it manages a large
# fleet. Not a timed test: it prints figures for BENCHMARKS.md and fails only when its setup
# or a daemon does not work.
#
#   benches/daemon.sh            NEO_BENCH_TENANTS (1000), NEO_BENCH_IDLE_SECONDS (600),
#                                NEO_BENCH_SOAK (1000 reconciles), NEO_BENCH_COMMIT_EVERY (5)
#
# Two throwaway PostgreSQL 15 clusters at PostgreSQL's default durability (us-east, eu-west),
# the example tree with NEO_BENCH_TENANTS more tenants (half per region), converged once by a
# CLI apply. Then two daemons (the release binary), each following a git repository of its
# own, run side by side:
#  - idle: polls every 60 s, no resync, its repository never changes. Sampled every 10 s for
#    NEO_BENCH_IDLE_SECONDS: resident set (VmRSS) and CPU time (utime + stime of
#    /proc/<pid>/stat) spent after its first reconcile;
#  - soak: a resync every second (a full reconcile without a new commit: fetch, load,
#    observe, plan; nothing to apply), and a new commit (a comment line added to neo.toml)
#    every NEO_BENCH_COMMIT_EVERY reconciles, for NEO_BENCH_SOAK reconciles. It reports the
#    resident set after the first 100 reconciles and at the end, the median, min and max time
#    of a no-change reconcile (from the daemon's histogram: the time of each window of
#    reconciles without a commit divided by their count), and the transactions each region's
#    server counted per reconcile (pg_stat_database.xact_commit + xact_rollback), which must
#    not grow with the number of tenants.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
cargo build --release --locked --quiet --bin neo-reconcile
bin="$PWD/target/release/neo-reconcile"
pg_bin=/usr/lib/postgresql/15/bin
tenants=${NEO_BENCH_TENANTS:-1000}
idle_seconds=${NEO_BENCH_IDLE_SECONDS:-600}
soak=${NEO_BENCH_SOAK:-1000}
commit_every=${NEO_BENCH_COMMIT_EVERY:-5}

work="$(mktemp -d /tmp/neo-bench-daemon.XXXXXX)"
chmod 755 "$work"
as_pg=()
[ "$(id -u)" -eq 0 ] && as_pg=(runuser -u postgres --)
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for name in us-east eu-west; do
    [ -f "$work/$name/data/postmaster.pid" ] && "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/$name/data" -m fast -w stop >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap stop_all EXIT

start_cluster() { # name port database env-prefix
  local name=$1 port=$2 db=$3 prefix=$4 dir="$work/$1"
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
  "${as_pg[@]}" "$pg_bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  # PostgreSQL's default durability: fsync, synchronous_commit and full_page_writes stay on.
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c max_connections=200" start >/dev/null
  local password
  password=$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
  "${as_pg[@]}" "$pg_bin/psql" -X -q -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 <<SQL
CREATE ROLE neo_migrator LOGIN CREATEROLE CREATEDB PASSWORD '$password';
CREATE DATABASE $db OWNER neo_migrator;
SQL
  export "${prefix}_USER=neo_migrator" "${prefix}_PASSWORD=$password"
}
start_cluster us-east 56432 neo_us NEO_US_EAST
start_cluster eu-west 56433 neo_eu NEO_EU_WEST
sql() { # region database query
  local port=56432
  [ "$1" = eu-west ] && port=56433
  "${as_pg[@]}" "$pg_bin/psql" -X -At -h "$work/$1" -p "$port" -U postgres -d "$2" -c "$3"
}

# The tree: the example, pointed at these clusters, with the bench's tenants.
tree="$work/tree"
cp -r desired-state "$tree"
sed -i 's/^port = 55432/port = 56432/' "$tree/regions/us-east.toml"
sed -i 's/^port = 55433/port = 56433/' "$tree/regions/eu-west.toml"
for i in $(seq 1 "$tenants"); do
  if [ $((i % 2)) -eq 0 ]; then region=us-east residency=US; else region=eu-west residency=EU; fi
  printf 'slug = "t%05d"\nregion = "%s"\nresidency = "%s"\nstatus = "active"\n' "$i" "$region" "$residency" \
    >"$tree/tenants/t$(printf %05d "$i").toml"
done
echo "setup: converging $tenants tenants with one apply"
start=$(date +%s.%N)
"$bin" apply "$tree" --auto-approve >"$work/setup-apply.log" 2>&1 || { tail -30 "$work/setup-apply.log"; exit 1; }
echo "setup: apply took $(echo "$(date +%s.%N) - $start" | bc) s"
"$bin" plan "$tree" --detailed-exitcode >/dev/null 2>&1 || { echo "setup: the plan after apply is not clean" >&2; exit 1; }

make_repo() { # dir
  mkdir -p "$1"
  cp -r "$tree/." "$1/"
  git -C "$1" init -q -b main
  git -C "$1" add -A
  git -C "$1" -c user.name=bench -c user.email=bench@localhost commit -qm "fleet"
}
start_daemon() { # name port poll resync
  local name=$1 port=$2 poll=$3 resync=$4
  make_repo "$work/repo-$name"
  {
    printf '[source]\nurl = "%s"\nbranch = "main"\npoll_interval = "%s"\ncache_dir = "%s"\n\n' \
      "$work/repo-$name" "$poll" "$work/cache-$name"
    printf '[reconcile]\nauto_apply = true\n'
    [ -n "$resync" ] && printf 'resync = "%s"\n' "$resync"
    printf '\n[http]\nlisten = "127.0.0.1:%s"\n' "$port"
  } >"$work/$name.toml"
  "$bin" daemon --config "$work/$name.toml" 2>"$work/$name.log" &
  pids+=($!)
}
http_get() { python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' "$1"; }
wait_ready() { # port
  for _ in $(seq 1 600); do http_get "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "a daemon did not become ready" >&2
  exit 1
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Reconciles of a region so far (every outcome), from /metrics.
runs() { # port
  http_get "http://127.0.0.1:$1/metrics" |
    awk '/^neo_reconcile_reconcile_runs_total\{region="us-east"/ {s += $2} END {print s + 0}'
}
# Seconds spent in us-east's reconciles so far, from the duration histogram.
seconds() { # port
  http_get "http://127.0.0.1:$1/metrics" |
    awk '/^neo_reconcile_reconcile_duration_seconds_sum\{region="us-east"/ {s += $2} END {print s + 0}'
}
xacts() { # region database
  sql "$1" postgres "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '$2'"
}

start_daemon idle 59201 60s ""
idle_pid=${pids[0]}
start_daemon soak 59202 60s "* * * * * *"
soak_pid=${pids[1]}
wait_ready 59201
wait_ready 59202
hz=$(getconf CLK_TCK)

# The soak, with the idle daemon sampled beside it.
idle_cpu0=$(cpu_ticks "$idle_pid")
idle_rss_max=0
idle_start=$(date +%s)
rss100=
durations=()
last_runs=$(runs 59202)
last_seconds=$(seconds 59202)
xus0=$(xacts us-east neo_us)
xeu0=$(xacts eu-west neo_eu)
runs0=$last_runs
commits=0
next_commit=$((last_runs + commit_every))
while :; do
  sleep 1
  n=$(runs 59202)
  if [ "$n" -ge $((runs0 + (soak < 100 ? soak : 100))) ] && [ -z "$rss100" ]; then rss100=$(rss_kib "$soak_pid"); fi
  if [ "$n" -gt "$last_runs" ]; then
    s=$(seconds 59202)
    if [ "$n" -lt "$next_commit" ]; then
      durations+=("$(echo "($s - $last_seconds) / ($n - $last_runs)" | bc -l)")
    fi
    last_runs=$n
    last_seconds=$s
  fi
  if [ "$n" -ge "$next_commit" ]; then
    echo "# bench commit $commits" >>"$work/repo-soak/neo.toml"
    git -C "$work/repo-soak" -c user.name=bench -c user.email=bench@localhost commit -qam "bench commit $commits"
    commits=$((commits + 1))
    next_commit=$((n + commit_every))
  fi
  r=$(rss_kib "$idle_pid")
  [ "$r" -gt "$idle_rss_max" ] && idle_rss_max=$r
  elapsed=$(($(date +%s) - idle_start))
  if [ "$n" -ge $((runs0 + soak)) ] && [ "$elapsed" -ge "$idle_seconds" ]; then break; fi
  kill -0 "$soak_pid" && kill -0 "$idle_pid" || { echo "a daemon died" >&2; tail -20 "$work"/*.log; exit 1; }
done
idle_cpu1=$(cpu_ticks "$idle_pid")
idle_rss_parts=$(awk '/^(RssAnon|RssFile):/ {printf "%s%s %s KiB", sep, $1, $2; sep = ", "}' "/proc/$idle_pid/status")
idle_rss_end=$(rss_kib "$idle_pid")
soak_runs=$(($(runs 59202) - runs0))
rss_end=$(rss_kib "$soak_pid")
xus=$(($(xacts us-east neo_us) - xus0))
xeu=$(($(xacts eu-west neo_eu) - xeu0))
stats=$(printf '%s\n' "${durations[@]}" | sort -g | awk '{a[NR] = $1} END {printf "median %.3f s, min %.3f s, max %.3f s (n = %d)", a[int((NR + 1) / 2)], a[1], a[NR], NR}')

echo
echo "daemon bench: $tenants tenants (+ the example's 7) over two regions, default durability, release binary"
echo "idle daemon ($elapsed s, polls every 60 s): peak RSS $((idle_rss_max / 1024)) MiB ($idle_rss_max KiB), CPU $(printf '%.2f' "$(echo "($idle_cpu1 - $idle_cpu0) / $hz" | bc -l)") s; at the end $idle_rss_end KiB ($idle_rss_parts)"
echo "soak daemon: $soak_runs reconciles ($commits new commits), RSS after $((soak < 100 ? soak : 100)): $((rss100 / 1024)) MiB ($rss100 KiB), at the end: $((rss_end / 1024)) MiB ($rss_end KiB), $(echo "scale=1; 100 * ($rss_end - $rss100) / $rss100" | bc) %"
echo "no-change reconcile (fetch, load, observe, plan) of us-east: $stats"
echo "transactions per reconcile, both daemons, all of each region's database: us-east $(echo "scale=1; $xus / $soak_runs" | bc), eu-west $(echo "scale=1; $xeu / $soak_runs" | bc)"
