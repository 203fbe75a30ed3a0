#!/usr/bin/env bash
# Example AppRole setup for neo-reconcile (run once by an operator with VAULT_ADDR and an
# admin VAULT_TOKEN). The host running neo-reconcile gets the role ID and a secret ID as
# files (here: systemd credentials), named by VAULT_ROLE_ID_FILE and VAULT_SECRET_ID_FILE.
set -euo pipefail
vault auth enable approle || true
vault policy write neo-reconcile vault/neo-reconcile-policy.hcl
# Tokens live 1 h and are renewed by neo-reconcile; after 4 h it logs in again.
vault write auth/approle/role/neo-reconcile \
  token_policies=neo-reconcile token_ttl=1h token_max_ttl=4h
umask 077
vault read -field=role_id auth/approle/role/neo-reconcile/role-id > /etc/credstore/neo-reconcile-vault-role-id
vault write -f -field=secret_id auth/approle/role/neo-reconcile/secret-id > /etc/credstore/neo-reconcile-vault-secret-id
