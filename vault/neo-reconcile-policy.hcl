# Policy of the token neo-reconcile runs with (attach it to its AppRole role or token).
# KV v2 logins: one secret per region (note the data/ segment of KV v2's API paths).
path "secret/data/neo/regions/*" {
  capabilities = ["read"]
}

# Dynamic logins from the database secrets engine, one role per region.
path "database/creds/neo-migrator-*" {
  capabilities = ["read"]
}

# Renewing and revoking the leases of those logins.
path "sys/leases/renew" {
  capabilities = ["update"]
}
path "sys/leases/revoke" {
  capabilities = ["update"]
}

# The token checks and renews itself (every token may do this by default policy too).
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
