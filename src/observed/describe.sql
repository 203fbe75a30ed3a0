-- The normalized description of the schemas named in $1 (text[]): one row per schema with the
-- MD5 of its lines (sorted bytewise, joined by newlines) and, when $2 is true, the lines
-- themselves as JSON [object, line, create, drop]. The schema's own name is removed from
-- every definition, and its roles (<schema>_owner, <schema>_rw) read @owner and @rw, so two
-- schemas built by the same migrations describe alike. Read by src/observed/shape_query.rs.
--
-- Cost: the deparsing functions (pg_get_viewdef, pg_get_indexdef, ...) dominate, so each is
-- called once per object (the `OFFSET 0` subqueries keep the planner from copying the call
-- into every expression that uses it), the CREATE and DROP statements are only built when
-- $2 is true, and roles are found by joins to pg_roles rather than one lookup per row.
-- shape_query.rs runs it with JIT compilation off: compiling the plan cost more than running
-- it. pg_get_viewdef locks each view and the tables it reads until the end of the
-- transaction: a tenant whose one view reads two tables adds three locks.
WITH s AS MATERIALIZED (
    SELECT n.oid, n.nspname::text AS name, quote_ident(n.nspname) || '.' AS q,
           n.nspname || '_owner' AS o, n.nspname || '_rw' AS rw, n.nspowner, n.nspacl
    FROM pg_namespace n WHERE n.nspname = ANY($1::text[])
),
rel AS MATERIALIZED (
    SELECT s.name AS schema, s.q, s.o, s.rw, c.oid, c.relname::text AS relname, c.relkind,
           c.relowner, c.relacl
    FROM s JOIN pg_class c ON c.relnamespace = s.oid
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      -- Flyway's history, left in a schema taken over with `adopt --from-flyway`.
      AND c.relname <> 'flyway_schema_history'
),
fn AS MATERIALIZED (
    SELECT s.name AS schema, s.q, s.o, s.rw, p.oid, p.proname::text AS proname, p.prokind,
           p.proowner, p.proacl, replace(pg_get_function_identity_arguments(p.oid), s.q, '') AS args
    FROM s JOIN pg_proc p ON p.pronamespace = s.oid
),
typ AS MATERIALIZED (
    SELECT s.name AS schema, s.q, s.o, s.rw, t.oid, t.typname::text AS typname, t.typtype,
           t.typowner, t.typacl, t.typbasetype, t.typtypmod, t.typnotnull, t.typdefault
    FROM s JOIN pg_type t ON t.typnamespace = s.oid
    LEFT JOIN pg_class tc ON tc.oid = t.typrelid
    WHERE t.typtype IN ('e', 'd', 'r', 'm') OR (t.typtype = 'c' AND tc.relkind = 'c')
),
objs AS MATERIALIZED (
    SELECT s.name AS schema, s.o, s.rw, 'schema' AS label, 'SCHEMA "@schema"' AS target,
           s.nspowner AS owner, coalesce(s.nspacl, acldefault('n', s.nspowner)) AS acl
    FROM s
    UNION ALL
    SELECT r.schema, r.o, r.rw,
           CASE WHEN r.relkind IN ('r', 'p') THEN 'table' WHEN r.relkind = 'v' THEN 'view'
                WHEN r.relkind = 'm' THEN 'materialized view' WHEN r.relkind = 'S' THEN 'sequence'
                ELSE 'foreign table' END || ' ' || r.relname,
           CASE WHEN r.relkind = 'S' THEN 'SEQUENCE ' ELSE 'TABLE ' END || quote_ident(r.relname),
           r.relowner,
           coalesce(r.relacl, acldefault((CASE WHEN r.relkind = 'S' THEN 's' ELSE 'r' END)::"char", r.relowner))
    FROM rel r
    UNION ALL
    SELECT f.schema, f.o, f.rw,
           CASE f.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END
               || ' ' || f.proname || '(' || f.args || ')',
           CASE f.prokind WHEN 'p' THEN 'PROCEDURE ' ELSE 'FUNCTION ' END || quote_ident(f.proname)
               || '(' || f.args || ')',
           f.proowner, coalesce(f.proacl, acldefault('f', f.proowner))
    FROM fn f
    UNION ALL
    SELECT t.schema, t.o, t.rw, 'type ' || t.typname, 'TYPE ' || quote_ident(t.typname),
           t.typowner, coalesce(t.typacl, acldefault('T', t.typowner))
    FROM typ t
),
lines AS (
    -- Owners.
    SELECT o.schema, o.label || ' owner' AS object,
           o.label || ' owner ' || CASE rn.rolname::text WHEN o.o THEN '@owner' WHEN o.rw THEN '@rw' ELSE rn.rolname::text END AS line,
           NULL::text AS "create", NULL::text AS "drop"
    FROM objs o LEFT JOIN pg_roles rn ON rn.oid = o.owner
    UNION ALL
    -- Privileges, one line per privilege and grantee.
    SELECT g.schema, 'grant ' || g.privilege_type || ' on ' || g.label || ' to ' || g.name,
           'grant ' || g.privilege_type || ' on ' || g.label || ' to ' || g.name
               || CASE WHEN g.is_grantable THEN ' with grant option' ELSE '' END,
           CASE WHEN $2 THEN 'GRANT ' || g.privilege_type || ' ON ' || g.target || ' TO ' || g.sql
               || CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END END,
           CASE WHEN $2 THEN 'REVOKE ' || g.privilege_type || ' ON ' || g.target || ' FROM ' || g.sql END
    FROM (
        SELECT o.schema, o.label, o.target, a.privilege_type, a.is_grantable,
               CASE WHEN a.grantee = 0 THEN 'PUBLIC' WHEN rn.rolname::text = o.o THEN '@owner'
                    WHEN rn.rolname::text = o.rw THEN '@rw' ELSE rn.rolname::text END AS name,
               CASE WHEN a.grantee = 0 THEN 'PUBLIC' WHEN rn.rolname::text = o.o THEN '"@owner"'
                    WHEN rn.rolname::text = o.rw THEN '"@rw"' ELSE quote_ident(rn.rolname::text) END AS sql
        FROM objs o
        CROSS JOIN LATERAL aclexplode(o.acl) a
        LEFT JOIN pg_roles rn ON rn.oid = a.grantee
    ) g
    UNION ALL
    -- Default privileges the schema's objects get.
    SELECT s.name, l.line, l.line, NULL, NULL
    FROM s JOIN pg_default_acl d ON d.defaclnamespace = s.oid
    CROSS JOIN LATERAL aclexplode(d.defaclacl) a
    JOIN pg_roles fr ON fr.oid = d.defaclrole
    LEFT JOIN pg_roles tr ON tr.oid = a.grantee
    CROSS JOIN LATERAL (
        SELECT 'default privileges of ' || CASE WHEN fr.rolname::text = s.o THEN '@owner' WHEN fr.rolname::text = s.rw THEN '@rw' ELSE fr.rolname::text END
               || ' on ' || CASE d.defaclobjtype WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences'
                                WHEN 'f' THEN 'functions' WHEN 'T' THEN 'types' ELSE 'schemas' END
               || ': grant ' || a.privilege_type || ' to '
               || CASE WHEN a.grantee = 0 THEN 'PUBLIC' WHEN tr.rolname::text = s.o THEN '@owner'
                       WHEN tr.rolname::text = s.rw THEN '@rw' ELSE tr.rolname::text END AS line
    ) l
    UNION ALL
    -- Columns of tables and composite types: type, nullability, default, identity.
    SELECT x.schema, 'column ' || x.relname || '.' || a.attname,
           'column ' || x.relname || '.' || a.attname || ' '
               || replace(format_type(a.atttypid, a.atttypmod), x.q, '')
               || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE ' NULL' END
               || CASE WHEN a.attgenerated = 's' THEN ' GENERATED ALWAYS AS ' || replace(pg_get_expr(d.adbin, d.adrelid), x.q, '') || ' STORED'
                       WHEN d.adbin IS NOT NULL THEN ' DEFAULT ' || replace(pg_get_expr(d.adbin, d.adrelid), x.q, '')
                       ELSE '' END
               || CASE a.attidentity WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY'
                                     WHEN 'd' THEN ' GENERATED BY DEFAULT AS IDENTITY' ELSE '' END,
           NULL, NULL
    FROM (SELECT r.schema, r.q, r.oid, r.relname FROM rel r WHERE r.relkind IN ('r', 'p', 'f')
          UNION ALL
          SELECT s.name, s.q, c.oid, c.relname::text FROM s JOIN pg_class c
              ON c.relnamespace = s.oid AND c.relkind = 'c') x
    JOIN pg_attribute a ON a.attrelid = x.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    UNION ALL
    -- Table constraints; check and foreign-key constraints can be put back.
    SELECT k.schema, 'constraint ' || k.relname || '.' || k.conname,
           'constraint ' || k.relname || '.' || k.conname || ' ' || k.def,
           CASE WHEN $2 AND k.contype IN ('c', 'f') THEN format('ALTER TABLE %I ADD CONSTRAINT %I %s', k.relname, k.conname, k.def) END,
           CASE WHEN $2 AND k.contype IN ('c', 'f') THEN format('ALTER TABLE %I DROP CONSTRAINT %I', k.relname, k.conname) END
    FROM (SELECT r.schema, r.relname, c.conname::text AS conname, c.contype,
                 replace(pg_get_constraintdef(c.oid), r.q, '') AS def
          FROM rel r JOIN pg_constraint c ON c.conrelid = r.oid OFFSET 0) k
    UNION ALL
    -- Indexes that no constraint owns.
    SELECT x.schema, 'index ' || x.relname,
           'index ' || x.relname || ' ' || regexp_replace(x.def, '^CREATE (UNIQUE )?INDEX \S+ ', '\1'),
           CASE WHEN $2 THEN x.def END,
           CASE WHEN $2 THEN format('DROP INDEX %I', x.relname) END
    FROM (SELECT r.schema, ic.relname::text AS relname, replace(pg_get_indexdef(i.indexrelid), r.q, '') AS def
          FROM rel r JOIN pg_index i ON i.indrelid = r.oid JOIN pg_class ic ON ic.oid = i.indexrelid
          WHERE NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x'))
          OFFSET 0) x
    UNION ALL
    -- Views (materialized views hold data: reported, never put back).
    SELECT v.schema, CASE v.relkind WHEN 'v' THEN 'view ' ELSE 'materialized view ' END || v.relname,
           CASE v.relkind WHEN 'v' THEN 'view ' ELSE 'materialized view ' END || v.relname || ' AS '
               || btrim(regexp_replace(v.def, '\s+', ' ', 'g')),
           CASE WHEN $2 AND v.relkind = 'v' THEN format('CREATE VIEW %I AS %s', v.relname, v.def) END,
           CASE WHEN $2 AND v.relkind = 'v' THEN format('DROP VIEW %I', v.relname) END
    FROM (SELECT r.schema, r.relname, r.relkind, replace(pg_get_viewdef(r.oid), r.q, '') AS def
          FROM rel r WHERE r.relkind IN ('v', 'm') OFFSET 0) v
    UNION ALL
    -- Sequences.
    SELECT r.schema, 'sequence ' || r.relname,
           'sequence ' || r.relname || ' ' || format_type(q.seqtypid, NULL) || ' start ' || q.seqstart
               || ' increment ' || q.seqincrement || ' min ' || q.seqmin || ' max ' || q.seqmax
               || ' cache ' || q.seqcache || CASE WHEN q.seqcycle THEN ' cycle' ELSE '' END,
           NULL, NULL
    FROM rel r JOIN pg_sequence q ON q.seqrelid = r.oid
    UNION ALL
    -- Functions and procedures: their whole definition.
    SELECT f.schema, lower(f.kind) || ' ' || f.proname || '(' || f.args || ')',
           lower(f.kind) || ' ' || f.proname || '(' || f.args || ') '
               || CASE WHEN f.prokind IN ('f', 'p') THEN btrim(regexp_replace(f.def, '\s+', ' ', 'g')) ELSE 'aggregate' END,
           CASE WHEN $2 AND f.prokind IN ('f', 'p') THEN f.def END,
           CASE WHEN $2 AND f.prokind IN ('f', 'p') THEN format('DROP %s %I(%s)', f.kind, f.proname, f.args) END
    FROM (SELECT f.schema, f.proname, f.prokind, f.args,
                 CASE f.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END AS kind,
                 CASE WHEN f.prokind IN ('f', 'p') THEN replace(pg_get_functiondef(f.oid), f.q, '') END AS def
          FROM fn f OFFSET 0) f
    UNION ALL
    -- Triggers.
    SELECT x.schema, 'trigger ' || x.relname || '.' || x.tgname,
           'trigger ' || x.relname || '.' || x.tgname || ' ' || x.def,
           CASE WHEN $2 THEN x.def END,
           CASE WHEN $2 THEN format('DROP TRIGGER %I ON %I', x.tgname, x.relname) END
    FROM (SELECT r.schema, r.relname, t.tgname::text AS tgname, replace(pg_get_triggerdef(t.oid), r.q, '') AS def
          FROM rel r JOIN pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal OFFSET 0) x
    UNION ALL
    -- Enums, domains, ranges and composite types.
    SELECT t.schema, 'type ' || t.typname,
           'type ' || t.typname || ' ' || CASE t.typtype
               WHEN 'e' THEN 'enum (' || coalesce((SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                                                  FROM pg_enum e WHERE e.enumtypid = t.oid), '') || ')'
               WHEN 'd' THEN 'domain ' || replace(format_type(t.typbasetype, t.typtypmod), t.q, '')
                   || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
                   || coalesce(' DEFAULT ' || t.typdefault, '')
                   || coalesce((SELECT ' ' || string_agg(replace(pg_get_constraintdef(c.oid), t.q, ''), ' ' ORDER BY c.conname)
                                FROM pg_constraint c WHERE c.contypid = t.oid), '')
               WHEN 'c' THEN 'composite'
               ELSE 'range' END,
           NULL, NULL
    FROM typ t
    WHERE t.typtype IN ('e', 'd', 'r', 'c')
)
SELECT l.schema,
       md5(string_agg(l.line, E'\n' ORDER BY l.line COLLATE "C")) AS fingerprint,
       CASE WHEN $2 THEN json_agg(json_build_array(l.object, l.line, l."create", l."drop")
                                  ORDER BY l.line COLLATE "C") FILTER (WHERE $2)::text END AS entries
FROM lines l
GROUP BY l.schema
