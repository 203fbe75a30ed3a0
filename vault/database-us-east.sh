#!/usr/bin/env bash
# Example Vault-side setup of dynamic logins for region us-east (run once by an operator with
# VAULT_ADDR and an admin VAULT_TOKEN). Each login is a short-lived LOGIN role that is a
# member of neo_migrator; the region file says set_role = "neo_migrator", so everything it
# creates belongs to neo_migrator, and revoking the login drops a role that owns nothing.
# The tests (tests/it/support/vault_world.rs) configure OpenBao with the same statements.
set -euo pipefail
vault secrets enable -path=database database || true
# Vault's own admin login to the cluster (not neo-reconcile's): it creates and drops the
# dynamic logins, so it needs CREATEROLE and the right to grant neo_migrator.
vault write database/config/pg-us-east \
  plugin_name=postgresql-database-plugin \
  allowed_roles=neo-migrator-us \
  connection_url='postgresql://{{username}}:{{password}}@pg-us-east.internal.example.com:5432/neo_us?sslmode=verify-full' \
  username=vault_admin password="$VAULT_ADMIN_PG_PASSWORD"
# Leases of 1 h, renewed by neo-reconcile's lease keeper up to 24 h, then replaced.
vault write database/roles/neo-migrator-us \
  db_name=pg-us-east default_ttl=1h max_ttl=24h \
  creation_statements="CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT neo_migrator TO \"{{name}}\";" \
  revocation_statements="REVOKE neo_migrator FROM \"{{name}}\"; DROP ROLE IF EXISTS \"{{name}}\";"
