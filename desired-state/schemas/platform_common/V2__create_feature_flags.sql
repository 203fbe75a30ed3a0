-- platform_common V2: feature flags, optionally restricted to a minimum plan.
--
-- A flag with min_plan NULL is available on every plan. Seed rows describe the flags the
-- application knows about today.

CREATE TABLE feature_flags (
    key                text        PRIMARY KEY CHECK (key ~ '^[a-z][a-z0-9_.]*$'),
    description        text        NOT NULL,
    enabled_by_default boolean     NOT NULL DEFAULT false,
    min_plan           text        REFERENCES plans (code),
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX feature_flags_min_plan_idx ON feature_flags (min_plan);

INSERT INTO feature_flags (key, description, enabled_by_default, min_plan) VALUES
    ('projects.archive',    'Archive projects instead of deleting them', true,  NULL),
    ('projects.visibility', 'Public and internal project visibility',    true,  'team'),
    ('audit.export',        'Export the audit log as CSV',               false, 'business'),
    ('sso.saml',            'Single sign-on with SAML 2.0',              false, 'enterprise');
