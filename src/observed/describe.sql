-- The normalized description of the schemas named in $1 (text[]): one row per schema with the
-- MD5 of its lines (sorted bytewise, joined by newlines) and, when $2 is true, the lines
-- themselves as JSON [object, line, create, drop]. The schema's own name is removed from
-- every definition, and its roles (<schema>_owner, <schema>_rw) read @owner and @rw, so two
-- schemas built by the same migrations describe alike. Read by src/observed/shape_query.rs.
WITH s AS (
    SELECT n.oid, n.nspname::text AS name, quote_ident(n.nspname) || '.' AS q,
           n.nspname || '_owner' AS o, n.nspname || '_rw' AS rw, n.nspowner, n.nspacl
    FROM pg_namespace n WHERE n.nspname = ANY($1::text[])
),
rel AS (
    SELECT s.name AS schema, s.q, s.o, s.rw, c.oid, c.relname::text AS relname, c.relkind,
           c.relowner, c.relacl
    FROM s JOIN pg_class c ON c.relnamespace = s.oid
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      -- Flyway's history, left in a schema taken over with `adopt --from-flyway`.
      AND c.relname <> 'flyway_schema_history'
),
objs AS (
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
    SELECT s.name, s.o, s.rw,
           CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END
               || ' ' || p.proname || '(' || replace(pg_get_function_identity_arguments(p.oid), s.q, '') || ')',
           CASE p.prokind WHEN 'p' THEN 'PROCEDURE ' ELSE 'FUNCTION ' END || quote_ident(p.proname)
               || '(' || replace(pg_get_function_identity_arguments(p.oid), s.q, '') || ')',
           p.proowner, coalesce(p.proacl, acldefault('f', p.proowner))
    FROM s JOIN pg_proc p ON p.pronamespace = s.oid
    UNION ALL
    SELECT s.name, s.o, s.rw, 'type ' || t.typname, 'TYPE ' || quote_ident(t.typname),
           t.typowner, coalesce(t.typacl, acldefault('T', t.typowner))
    FROM s JOIN pg_type t ON t.typnamespace = s.oid
    WHERE t.typtype IN ('e', 'd', 'r', 'm')
       OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
),
lines AS (
    -- Owners.
    SELECT o.schema, o.label || ' owner' AS object,
           o.label || ' owner ' || CASE rn.name WHEN o.o THEN '@owner' WHEN o.rw THEN '@rw' ELSE rn.name END AS line,
           NULL::text AS "create", NULL::text AS "drop"
    FROM objs o LEFT JOIN LATERAL (SELECT rolname::text AS name FROM pg_roles WHERE oid = o.owner) rn ON true
    UNION ALL
    -- Privileges, one line per privilege and grantee.
    SELECT o.schema, 'grant ' || a.privilege_type || ' on ' || o.label || ' to ' || g.name,
           'grant ' || a.privilege_type || ' on ' || o.label || ' to ' || g.name
               || CASE WHEN a.is_grantable THEN ' with grant option' ELSE '' END,
           'GRANT ' || a.privilege_type || ' ON ' || o.target || ' TO ' || g.sql
               || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END,
           'REVOKE ' || a.privilege_type || ' ON ' || o.target || ' FROM ' || g.sql
    FROM objs o
    CROSS JOIN LATERAL aclexplode(o.acl) a
    CROSS JOIN LATERAL (
        SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' WHEN rn.name = o.o THEN '@owner'
                    WHEN rn.name = o.rw THEN '@rw' ELSE rn.name END AS name,
               CASE WHEN a.grantee = 0 THEN 'PUBLIC' WHEN rn.name = o.o THEN '"@owner"'
                    WHEN rn.name = o.rw THEN '"@rw"' ELSE quote_ident(rn.name) END AS sql
        FROM (SELECT (SELECT rolname::text FROM pg_roles WHERE oid = a.grantee) AS name) rn
    ) g
    UNION ALL
    -- Default privileges the schema's objects get.
    SELECT s.name, l.line, l.line, NULL, NULL
    FROM s JOIN pg_default_acl d ON d.defaclnamespace = s.oid
    CROSS JOIN LATERAL aclexplode(d.defaclacl) a
    CROSS JOIN LATERAL (
        SELECT 'default privileges of ' || CASE WHEN fr.name = s.o THEN '@owner' WHEN fr.name = s.rw THEN '@rw' ELSE fr.name END
               || ' on ' || CASE d.defaclobjtype WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences'
                                WHEN 'f' THEN 'functions' WHEN 'T' THEN 'types' ELSE 'schemas' END
               || ': grant ' || a.privilege_type || ' to '
               || CASE WHEN a.grantee = 0 THEN 'PUBLIC' WHEN tr.name = s.o THEN '@owner'
                       WHEN tr.name = s.rw THEN '@rw' ELSE tr.name END AS line
        FROM (SELECT rolname::text AS name FROM pg_roles WHERE oid = d.defaclrole) fr
        LEFT JOIN (SELECT rolname::text AS name FROM pg_roles WHERE oid = a.grantee) tr ON true
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
    SELECT r.schema, 'constraint ' || r.relname || '.' || c.conname,
           'constraint ' || r.relname || '.' || c.conname || ' ' || replace(pg_get_constraintdef(c.oid), r.q, ''),
           CASE WHEN c.contype IN ('c', 'f') THEN format('ALTER TABLE %I ADD CONSTRAINT %I %s', r.relname, c.conname, replace(pg_get_constraintdef(c.oid), r.q, '')) END,
           CASE WHEN c.contype IN ('c', 'f') THEN format('ALTER TABLE %I DROP CONSTRAINT %I', r.relname, c.conname) END
    FROM rel r JOIN pg_constraint c ON c.conrelid = r.oid
    UNION ALL
    -- Indexes that no constraint owns.
    SELECT r.schema, 'index ' || ic.relname,
           'index ' || ic.relname || ' ' || regexp_replace(replace(pg_get_indexdef(i.indexrelid), r.q, ''), '^CREATE (UNIQUE )?INDEX \S+ ', '\1'),
           replace(pg_get_indexdef(i.indexrelid), r.q, ''),
           format('DROP INDEX %I', ic.relname)
    FROM rel r JOIN pg_index i ON i.indrelid = r.oid JOIN pg_class ic ON ic.oid = i.indexrelid
    WHERE NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x'))
    UNION ALL
    -- Views (materialized views hold data: reported, never put back).
    SELECT r.schema, CASE r.relkind WHEN 'v' THEN 'view ' ELSE 'materialized view ' END || r.relname,
           CASE r.relkind WHEN 'v' THEN 'view ' ELSE 'materialized view ' END || r.relname || ' AS '
               || btrim(regexp_replace(replace(pg_get_viewdef(r.oid), r.q, ''), '\s+', ' ', 'g')),
           CASE WHEN r.relkind = 'v' THEN format('CREATE VIEW %I AS %s', r.relname, replace(pg_get_viewdef(r.oid), r.q, '')) END,
           CASE WHEN r.relkind = 'v' THEN format('DROP VIEW %I', r.relname) END
    FROM rel r WHERE r.relkind IN ('v', 'm')
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
    SELECT s.name, lower(k.kind) || ' ' || p.proname || '(' || replace(pg_get_function_identity_arguments(p.oid), s.q, '') || ')',
           lower(k.kind) || ' ' || p.proname || '(' || replace(pg_get_function_identity_arguments(p.oid), s.q, '') || ') '
               || CASE WHEN p.prokind IN ('f', 'p') THEN btrim(regexp_replace(replace(pg_get_functiondef(p.oid), s.q, ''), '\s+', ' ', 'g')) ELSE 'aggregate' END,
           CASE WHEN p.prokind IN ('f', 'p') THEN replace(pg_get_functiondef(p.oid), s.q, '') END,
           CASE WHEN p.prokind IN ('f', 'p') THEN format('DROP %s %I(%s)', k.kind, p.proname, replace(pg_get_function_identity_arguments(p.oid), s.q, '')) END
    FROM s JOIN pg_proc p ON p.pronamespace = s.oid
    CROSS JOIN LATERAL (SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END AS kind) k
    UNION ALL
    -- Triggers.
    SELECT r.schema, 'trigger ' || r.relname || '.' || t.tgname,
           'trigger ' || r.relname || '.' || t.tgname || ' ' || replace(pg_get_triggerdef(t.oid), r.q, ''),
           replace(pg_get_triggerdef(t.oid), r.q, ''),
           format('DROP TRIGGER %I ON %I', t.tgname, r.relname)
    FROM rel r JOIN pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal
    UNION ALL
    -- Enums, domains, ranges and composite types.
    SELECT s.name, 'type ' || t.typname,
           'type ' || t.typname || ' ' || CASE t.typtype
               WHEN 'e' THEN 'enum (' || coalesce((SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                                                  FROM pg_enum e WHERE e.enumtypid = t.oid), '') || ')'
               WHEN 'd' THEN 'domain ' || replace(format_type(t.typbasetype, t.typtypmod), s.q, '')
                   || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
                   || coalesce(' DEFAULT ' || t.typdefault, '')
                   || coalesce((SELECT ' ' || string_agg(replace(pg_get_constraintdef(c.oid), s.q, ''), ' ' ORDER BY c.conname)
                                FROM pg_constraint c WHERE c.contypid = t.oid), '')
               WHEN 'c' THEN 'composite'
               ELSE 'range' END,
           NULL, NULL
    FROM s JOIN pg_type t ON t.typnamespace = s.oid
    WHERE t.typtype IN ('e', 'd', 'r')
       OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
)
SELECT l.schema,
       md5(string_agg(l.line, E'\n' ORDER BY l.line COLLATE "C")) AS fingerprint,
       CASE WHEN $2 THEN json_agg(json_build_array(l.object, l.line, l."create", l."drop")
                                  ORDER BY l.line COLLATE "C")::text END AS entries
FROM lines l
GROUP BY l.schema
