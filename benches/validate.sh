#!/usr/bin/env bash
# Times `neo-reconcile validate` (the release binary, a process per run, wall time) on the
# example tree `desired-state/`, and on a copy of it with N more tenant_template migrations:
# realistic files generated from eight templates in turn (tables with indexes and comments,
# added columns and constraints, seed data, views, SQL-standard and PL/pgSQL functions with a
# trigger, a `-- neo:no-transaction` concurrent index, a file wrapped in BEGIN/COMMIT, an enum).
# Every migration file is read by PostgreSQL's parser, so this is what that costs.
#
#   benches/validate.sh [N] [RUNS]     N migrations added (default 300), RUNS timed runs per
#                                      tree (default 20, after one warm-up run)
#   NEO_BIN=path                       the binary (default target/release/neo-reconcile, built)
#   NEO_BASE_BIN=path                  another binary timed the same way, for a comparison
#
# Prints one line per binary and tree: median, min and max in milliseconds. The generated
# tree must be valid: the script fails otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-300}
runs=${2:-20}
bin=${NEO_BIN:-target/release/neo-reconcile}
if [ -z "${NEO_BIN:-}" ]; then
  cargo build --release --locked --bin neo-reconcile >&2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r desired-state "$tmp/example"
cp -r desired-state "$tmp/big"
dir="$tmp/big/schemas/tenant_template"

# Migration number v (7, 8, ...) of cycle c = (v - 7) / 8 uses template (v - 7) % 8; the
# templates of one cycle build on the table its first template creates.
migration() {
  local v=$1 c=$(( ($1 - 7) / 8 )) t=$(( ($1 - 7) % 8 ))
  case $t in
    0) cat <<SQL
-- tenant_template V$v: the items_$c table, its lookup index and its documentation.
CREATE TABLE items_$c (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        text        NOT NULL,
    quantity    integer     NOT NULL DEFAULT 0 CHECK (quantity >= 0),
    price_cents integer     NOT NULL CHECK (price_cents >= 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX items_${c}_owner_id_idx ON items_$c (owner_id);
COMMENT ON TABLE items_$c IS 'Items of cycle $c.';
SQL
    ;;
    1) cat <<SQL
-- tenant_template V$v: added columns with constant defaults, and a rule on them.
ALTER TABLE items_$c
    ADD COLUMN archived boolean NOT NULL DEFAULT false,
    ADD COLUMN currency char(3) NOT NULL DEFAULT 'EUR',
    ADD CONSTRAINT items_${c}_currency_check CHECK (currency ~ '^[A-Z]{3}\$');
COMMENT ON COLUMN items_$c.currency IS 'ISO 4217 currency code.';
SQL
    ;;
    2) cat <<SQL
-- tenant_template V$v: starter rows for every owner.
INSERT INTO items_$c (owner_id, name, quantity, price_cents)
SELECT u.id, 'Starter ' || i, i % 7, 100 + (i * 37) % 9900
  FROM users u
 CROSS JOIN generate_series(1, 3) AS i
 WHERE NOT EXISTS (SELECT 1 FROM items_$c x WHERE x.owner_id = u.id);
UPDATE items_$c SET archived = true WHERE quantity = 0 AND created_at < now() - interval '1 year';
SQL
    ;;
    3) cat <<SQL
-- tenant_template V$v: the per-owner summary the dashboard reads.
CREATE VIEW items_${c}_summary AS
SELECT u.id                                   AS owner_id,
       u.email,
       count(i.id)                            AS items,
       coalesce(sum(i.price_cents * i.quantity), 0) AS stock_cents,
       max(i.created_at)                      AS last_item_at
  FROM users u
  LEFT JOIN items_$c i ON i.owner_id = u.id AND NOT i.archived
 GROUP BY u.id, u.email;
SQL
    ;;
    4) cat <<SQL
-- tenant_template V$v: a SQL function for an owner's stock, and created_at kept by a trigger.
CREATE FUNCTION items_${c}_stock(p_owner_id bigint)
    RETURNS bigint
    LANGUAGE sql
    STABLE
BEGIN ATOMIC
    SELECT coalesce(sum(price_cents * quantity), 0) FROM items_$c WHERE owner_id = p_owner_id;
END;

CREATE FUNCTION items_${c}_keep_created_at() RETURNS trigger
    LANGUAGE plpgsql
AS \$\$
BEGIN
    NEW.created_at := OLD.created_at;
    RETURN NEW;
END
\$\$;

CREATE TRIGGER items_${c}_keep_created_at
    BEFORE UPDATE ON items_$c
    FOR EACH ROW EXECUTE FUNCTION items_${c}_keep_created_at();
SQL
    ;;
    5) cat <<SQL
-- neo:no-transaction
-- tenant_template V$v: a partial index of the live items, built without blocking writes.
-- An interrupted build leaves an INVALID index behind: drop any leftover first.
DROP INDEX CONCURRENTLY IF EXISTS items_${c}_live_created_at_idx;
CREATE INDEX CONCURRENTLY items_${c}_live_created_at_idx ON items_$c (owner_id, created_at DESC) WHERE NOT archived;
SQL
    ;;
    6) cat <<SQL
-- tenant_template V$v: written for dbmate, wrapped in one transaction (the pair is left out).
BEGIN;

CREATE TABLE item_${c}_events (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    item_id    bigint      NOT NULL REFERENCES items_$c (id) ON DELETE CASCADE,
    kind       text        NOT NULL CHECK (kind IN ('created', 'sold', 'archived')),
    payload    jsonb       NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO item_${c}_events (item_id, kind, created_at)
SELECT id, 'created', created_at FROM items_$c;

COMMIT;
SQL
    ;;
    7) cat <<SQL
-- tenant_template V$v: event kinds become an enum (rewrites the table).
CREATE TYPE item_${c}_event_kind AS ENUM ('created', 'sold', 'archived');
ALTER TABLE item_${c}_events
    DROP CONSTRAINT item_${c}_events_kind_check,
    ALTER COLUMN kind TYPE item_${c}_event_kind USING kind::item_${c}_event_kind;
CREATE INDEX item_${c}_events_item_id_idx ON item_${c}_events (item_id, created_at);
SQL
    ;;
  esac
}

for v in $(seq 7 $((6 + n))); do
  migration "$v" >"$dir/V${v}__generated_$v.sql"
done

time_runs() {
  local binary=$1 tree=$2 label=$3
  "$binary" validate "$tree" >/dev/null || { echo "validate $label failed:" >&2; "$binary" validate "$tree" >&2; exit 1; }
  local samples=()
  for _ in $(seq "$runs"); do
    local start end
    start=$(date +%s%N)
    "$binary" validate "$tree" >/dev/null
    end=$(date +%s%N)
    samples+=($(( (end - start) / 1000 )))
  done
  printf '%s\n' "${samples[@]}" | sort -n | awk -v label="$label" -v runs="$runs" '
    { s[NR] = $1 }
    END {
      median = (NR % 2) ? s[(NR + 1) / 2] : (s[NR / 2] + s[NR / 2 + 1]) / 2
      printf "%-58s n=%-3d median %7.1f ms   min %7.1f ms   max %7.1f ms\n", label, runs, median / 1000, s[1] / 1000, s[NR] / 1000
    }'
}

files() { find "$1/schemas" -name 'V*.sql' | wc -l; }
for side in bin base; do
  binary=$bin; [ "$side" = base ] && binary=${NEO_BASE_BIN:-}
  [ -n "$binary" ] || continue
  time_runs "$binary" "$tmp/example" "$binary: example tree ($(files "$tmp/example") migrations)"
  time_runs "$binary" "$tmp/big" "$binary: example + $n generated ($(files "$tmp/big") migrations)"
done
