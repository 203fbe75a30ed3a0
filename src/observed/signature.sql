-- The change signature of the schemas named in $1 (text[]): one row per schema with the number
-- of catalog rows its objects are made of and a sum of 64-bit hashes of each row's identity
-- and row version (xmin), as text. Read by src/observed/shape_query.rs.
--
-- Any CREATE, ALTER, DROP, GRANT, REVOKE or OWNER TO on the schema or its objects writes new
-- versions of these rows (a new xmin) or removes some (a lower count), so it changes the
-- signature; VACUUM and ANALYZE update catalog rows in place and do not. Rows whose
-- described content only changes with a row already counted are left out: the system columns
-- of a table, the columns of indexes and sequences, `pg_index` (an index's definition is fixed
-- when it is created, with its pg_class row), array types (they follow their element type, and
-- take no privileges) and internal triggers (they follow their foreign-key constraint, and are
-- not described). Each catalog is summed per schema before the sums are added up. It reads no
-- definition and takes no lock on the schema's relations, so it stays cheap at any fleet size:
-- a plan describes (and fingerprints) only the schemas whose signature differs from the one
-- the last apply recorded with their fingerprint (`neo_reconcile.live_fingerprints`).
WITH s AS MATERIALIZED (
    SELECT n.oid, n.nspname::text AS name, n.xmin AS x
    FROM pg_namespace n WHERE n.nspname = ANY($1::text[])
),
c AS MATERIALIZED (
    SELECT c.relnamespace AS ns, c.oid, c.relkind, c.xmin AS x FROM pg_class c
    WHERE c.relnamespace IN (SELECT oid FROM s)
),
r AS (
    SELECT oid AS ns, 1 AS n, hashint8extended(oid::bigint | (1::bigint << 56), x::text::bigint)::numeric AS h FROM s
    UNION ALL SELECT ns, count(*), sum(hashint8extended(oid::bigint | (2::bigint << 56), x::text::bigint)) FROM c GROUP BY ns
    UNION ALL SELECT t.typnamespace, count(*), sum(hashint8extended(t.oid::bigint | (3::bigint << 56), t.xmin::text::bigint))
        FROM pg_type t WHERE t.typnamespace IN (SELECT oid FROM s) AND t.typcategory <> 'A' GROUP BY 1
    UNION ALL SELECT c.ns, count(*), sum(hashint8extended(((a.attrelid::bigint << 12) + a.attnum) | (4::bigint << 56), a.xmin::text::bigint))
        FROM c JOIN pg_attribute a ON a.attrelid = c.oid
        WHERE a.attnum > 0 AND c.relkind IN ('r', 'p', 'v', 'm', 'c', 'f') GROUP BY 1
    UNION ALL SELECT c.ns, count(*), sum(hashint8extended(d.oid::bigint | (5::bigint << 56), d.xmin::text::bigint))
        FROM c JOIN pg_attrdef d ON d.adrelid = c.oid GROUP BY 1
    UNION ALL SELECT k.connamespace, count(*), sum(hashint8extended(k.oid::bigint | (7::bigint << 56), k.xmin::text::bigint))
        FROM pg_constraint k WHERE k.connamespace IN (SELECT oid FROM s) GROUP BY 1
    UNION ALL SELECT c.ns, count(*), sum(hashint8extended(g.oid::bigint | (8::bigint << 56), g.xmin::text::bigint))
        FROM c JOIN pg_trigger g ON g.tgrelid = c.oid WHERE NOT g.tgisinternal GROUP BY 1
    UNION ALL SELECT p.pronamespace, count(*), sum(hashint8extended(p.oid::bigint | (9::bigint << 56), p.xmin::text::bigint))
        FROM pg_proc p WHERE p.pronamespace IN (SELECT oid FROM s) GROUP BY 1
    UNION ALL SELECT c.ns, count(*), sum(hashint8extended(w.oid::bigint | (10::bigint << 56), w.xmin::text::bigint))
        FROM c JOIN pg_rewrite w ON w.ev_class = c.oid GROUP BY 1
    UNION ALL SELECT c.ns, count(*), sum(hashint8extended(q.seqrelid::bigint | (11::bigint << 56), q.xmin::text::bigint))
        FROM c JOIN pg_sequence q ON q.seqrelid = c.oid GROUP BY 1
    UNION ALL SELECT t.typnamespace, count(*), sum(hashint8extended(e.oid::bigint | (12::bigint << 56), e.xmin::text::bigint))
        FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid WHERE t.typnamespace IN (SELECT oid FROM s) GROUP BY 1
    UNION ALL SELECT d.defaclnamespace, count(*), sum(hashint8extended(d.oid::bigint | (13::bigint << 56), d.xmin::text::bigint))
        FROM pg_default_acl d WHERE d.defaclnamespace IN (SELECT oid FROM s) GROUP BY 1
)
SELECT s.name AS schema, g.n::text || ':' || g.h::text AS signature
FROM (SELECT ns, sum(n) AS n, sum(h) AS h FROM r GROUP BY ns) g JOIN s ON s.oid = g.ns
