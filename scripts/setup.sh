#!/usr/bin/env bash
# Installs what neo-reconcile's demo and tests need on a fresh Debian machine:
# PostgreSQL 15 server binaries (initdb, pg_ctl, postgres, psql) from Debian's packages, and
# the clients scripts/corpus.sh fetches the test corpus with (python3 with pip, npm), and
# libclang (Debian's libclang-dev), which the build of the pg_query crate (PostgreSQL's own SQL
# parser, used to check migrations) needs to generate its bindings.
# The Rust toolchain and a C compiler are expected (rustup, build-essential); everything else
# comes from Cargo.lock.
set -euo pipefail

pg_bin=/usr/lib/postgresql/15/bin
missing=()
[ -x "$pg_bin/initdb" ] && [ -x "$pg_bin/pg_ctl" ] && [ -x "$pg_bin/postgres" ] || missing+=(postgresql-15)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client-15)
python3 -c 'import tomllib' >/dev/null 2>&1 || missing+=(python3)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# bindgen looks for libclang.so under LIBCLANG_PATH, or where Debian's llvm packages put it.
if [ -z "${LIBCLANG_PATH:-}" ] && ! compgen -G '/usr/lib/llvm-*/lib/libclang.so' >/dev/null; then
  missing+=(libclang-dev)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# PostgreSQL refuses to run as root; as root, the harness runs it as this unprivileged user.
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found: install Rust with rustup" >&2; exit 1; }
echo "setup: PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') at $pg_bin" >&2
