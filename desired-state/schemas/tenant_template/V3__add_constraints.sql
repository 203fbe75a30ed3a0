-- tenant_template V3: integrity rules.

-- One account per e-mail address, ignoring case. A unique index (rather than a UNIQUE
-- constraint) because it is on an expression. It replaces the plain index of V2.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
DROP INDEX users_lower_email_idx;

-- A plausible e-mail address: something@something.
ALTER TABLE users
    ADD CONSTRAINT users_email_format_check CHECK (email ~ '^[^@[:space:]]+@[^@[:space:]]+$');

-- Project names are not blank and are unique per owner.
ALTER TABLE projects
    ADD CONSTRAINT projects_name_not_blank_check CHECK (btrim(name) <> ''),
    ADD CONSTRAINT projects_owner_id_name_key UNIQUE (owner_id, name);
