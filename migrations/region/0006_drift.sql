-- Live-schema drift a human accepted with `neo-reconcile adopt --accept-drift`: the live shape
-- of a schema (its fingerprint) at the versions it had then. A plan treats that exact shape at
-- those versions as expected, so one hotfix does not block a tenant forever; the next migration
-- (other versions) or any further change (another fingerprint) ends the acceptance.
CREATE TABLE neo_reconcile.accepted_drift (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target_schema text        NOT NULL,
    -- The versions the schema was at, as the plan names them ("tenant_template V5").
    versions      text        NOT NULL,
    fingerprint   text        NOT NULL,
    accepted_at   timestamptz NOT NULL DEFAULT now(),
    -- Who accepted it: the operating-system user and host, and the database role.
    accepted_by   text        NOT NULL,
    reason        text        NOT NULL,
    git_commit    text
);

-- The expected shape of a combination of set versions: what migrations 1..V of each set give
-- an empty schema, computed by apply under the region lock in a scratch schema inside a
-- transaction that is rolled back, and kept here so that a plan (read-only) only reads it.
-- `id` is a digest of the describe query, the versions and the checksums of every file they
-- run, so a changed file or a new neo-reconcile description is computed again. A migration
-- that fails in the scratch schema leaves `failure` (its targets are not checked) instead of
-- a shape.
CREATE TABLE neo_reconcile.expected_shapes (
    id             text        NOT NULL,
    -- The major version of the server that computed it (definitions deparse per version).
    server_major   integer     NOT NULL,
    -- The versions, as the plan names them ("tenant_template V5").
    versions       text        NOT NULL,
    fingerprint    text,
    -- The description: a JSON array of [object, line, create, drop].
    entries        text,
    failure        text,
    computed_at    timestamptz NOT NULL DEFAULT now(),
    computed_by    text        NOT NULL,
    PRIMARY KEY (id, server_major),
    CHECK ((fingerprint IS NOT NULL AND entries IS NOT NULL) <> (failure IS NOT NULL))
);

-- The fingerprint of each checked live schema as the last apply described it, with the change
-- signature it had then (see src/observed/signature.sql). A plan describes only the schemas
-- whose signature differs; a row of another neo-reconcile description (`describe_id`) or
-- another server version is not used.
CREATE TABLE neo_reconcile.live_fingerprints (
    target_schema  text        PRIMARY KEY,
    describe_id    text        NOT NULL,
    server_version integer     NOT NULL,
    signature      text        NOT NULL,
    fingerprint    text        NOT NULL,
    described_at   timestamptz NOT NULL DEFAULT now()
);
