-- tenant_template V2: indexes for the common lookups of the application.
--
-- The tables are still small when this runs as part of onboarding, so plain (locking)
-- CREATE INDEX inside the transaction of the migration is fine here. Compare V6.

-- PostgreSQL does not index the referencing side of a foreign key by itself: without this,
-- listing the projects of a user and ON DELETE CASCADE from users scan all of projects.
CREATE INDEX projects_owner_id_idx ON projects (owner_id);

-- Sign-in looks users up by e-mail address, case-insensitively.
CREATE INDEX users_lower_email_idx ON users (lower(email));

-- Listings of recently created projects.
CREATE INDEX projects_created_at_idx ON projects (created_at DESC);
