-- The change signature of the schemas named in $1 (text[]): one row per schema with the number
-- of catalog rows its objects are made of and a sum of 64-bit hashes of each row's identity
-- and row version (xmin), as text. Read by src/observed/shape_query.rs.
--
-- Any CREATE, ALTER, DROP, GRANT, REVOKE or OWNER TO on the schema or its objects writes new
-- versions of these rows (a new xmin) or removes some (a lower count), so it changes the
-- signature; VACUUM and ANALYZE update catalog rows in place and do not. It reads no
-- definition and takes no lock on the schema's relations, so it stays cheap at any fleet size:
-- a plan describes (and fingerprints) only the schemas whose signature differs from the one
-- the last apply recorded with their fingerprint (`neo_reconcile.live_fingerprints`).
WITH s AS MATERIALIZED (
    SELECT n.oid, n.nspname::text AS name, n.xmin AS x
    FROM pg_namespace n WHERE n.nspname = ANY($1::text[])
),
c AS MATERIALIZED (
    SELECT s.name, c.oid, c.xmin AS x FROM s JOIN pg_class c ON c.relnamespace = s.oid
),
t AS MATERIALIZED (
    SELECT s.name, t.oid, t.xmin AS x FROM s JOIN pg_type t ON t.typnamespace = s.oid
),
r AS (
    SELECT name, 1 AS cat, oid::bigint AS id, x FROM s
    UNION ALL SELECT name, 2, oid::bigint, x FROM c
    UNION ALL SELECT name, 3, oid::bigint, x FROM t
    UNION ALL SELECT c.name, 4, (a.attrelid::bigint << 12) + a.attnum + 16, a.xmin
        FROM c JOIN pg_attribute a ON a.attrelid = c.oid
    UNION ALL SELECT c.name, 5, d.oid::bigint, d.xmin FROM c JOIN pg_attrdef d ON d.adrelid = c.oid
    UNION ALL SELECT c.name, 6, i.indexrelid::bigint, i.xmin FROM c JOIN pg_index i ON i.indexrelid = c.oid
    UNION ALL SELECT s.name, 7, k.oid::bigint, k.xmin FROM s JOIN pg_constraint k ON k.connamespace = s.oid
    UNION ALL SELECT c.name, 8, g.oid::bigint, g.xmin FROM c JOIN pg_trigger g ON g.tgrelid = c.oid
    UNION ALL SELECT s.name, 9, p.oid::bigint, p.xmin FROM s JOIN pg_proc p ON p.pronamespace = s.oid
    UNION ALL SELECT c.name, 10, w.oid::bigint, w.xmin FROM c JOIN pg_rewrite w ON w.ev_class = c.oid
    UNION ALL SELECT c.name, 11, q.seqrelid::bigint, q.xmin FROM c JOIN pg_sequence q ON q.seqrelid = c.oid
    UNION ALL SELECT t.name, 12, e.oid::bigint, e.xmin FROM t JOIN pg_enum e ON e.enumtypid = t.oid
    UNION ALL SELECT s.name, 13, d.oid::bigint, d.xmin FROM s JOIN pg_default_acl d ON d.defaclnamespace = s.oid
)
SELECT name AS schema,
       count(*)::text || ':' || sum(hashint8extended((cat::bigint << 56) # id, x::text::bigint))::text
           AS signature
FROM r
GROUP BY name
