#!/usr/bin/env bash
# The whole test suite: installs what a fresh machine lacks, then runs every unit and
# integration test (integration tests start their own throwaway PostgreSQL clusters).
# Last, the two benchmarks run at a tiny size in the debug build: not to measure
# anything, but so that their setup and their checks (the expected plan, both sides of the
# apply bench ending identical) cannot rot. The real figures: BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export NEO_PG_BIN=/usr/lib/postgresql/15/bin
export NEO_BAO_BIN="$PWD/target/tools/bao"
cargo build --locked --all-targets
cargo test --locked --lib --bins --tests -- --test-threads="${NEO_TEST_THREADS:-4}"
NEO_BENCH_TENANTS=40 NEO_BENCH_ROUNDS=1 NEO_BENCH_RUNS=1 NEO_BENCH_ITERATIONS=1 \
  cargo test --locked --bench plan --bench apply
