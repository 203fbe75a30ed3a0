#!/usr/bin/env bash
# The whole test suite: installs what a fresh machine lacks, then runs every unit and
# integration test (integration tests start their own throwaway PostgreSQL clusters).
# Benchmarks are compiled, so they cannot rot, but not run (see BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export NEO_PG_BIN=/usr/lib/postgresql/15/bin
cargo build --locked --all-targets
cargo test --locked --lib --bins --tests -- --test-threads="${NEO_TEST_THREADS:-4}"
