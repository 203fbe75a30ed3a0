-- platform_common V1: the plans reference table, with its seed rows.
--
-- Region scope: applied once per region database with search_path set to platform_common,
-- so no object here names a schema.

CREATE TABLE plans (
    code                text        PRIMARY KEY,
    display_name        text        NOT NULL,
    max_users           integer     NOT NULL CHECK (max_users > 0),
    max_projects        integer     NOT NULL CHECK (max_projects > 0),
    monthly_price_cents integer     NOT NULL CHECK (monthly_price_cents >= 0),
    created_at          timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE plans IS 'Commercial plans offered to tenants (reference data, one copy per region).';

INSERT INTO plans (code, display_name, max_users, max_projects, monthly_price_cents) VALUES
    ('free',       'Free',        3,     5,      0),
    ('team',       'Team',       25,   100,   4900),
    ('business',   'Business',  250,  1000,  29900),
    ('enterprise', 'Enterprise', 100000, 100000, 199900);
