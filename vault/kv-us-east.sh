#!/usr/bin/env bash
# Example KV v2 login for region us-east (vault_kv = "secret/neo/regions/us-east"). The
# password is read from the terminal, never from the command line.
set -euo pipefail
read -rsp "neo_migrator's password for us-east: " password
vault kv put secret/neo/regions/us-east username=neo_migrator password=- <<<"$password"
