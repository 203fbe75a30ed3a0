-- Every apply is a run: who ran it, from which desired state, what it planned, how it ended.
CREATE TABLE neo_reconcile.runs (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    command        text        NOT NULL,
    host           text        NOT NULL,
    pid            integer     NOT NULL,
    run_by         text        NOT NULL,
    desired_digest text        NOT NULL,
    git_commit     text,
    plan_text      text        NOT NULL,
    outcome        text        NOT NULL DEFAULT 'running'
                   CHECK (outcome IN ('running', 'succeeded', 'failed', 'interrupted', 'no_changes')),
    error          text
);

-- Who holds the region's advisory lock, so that a second apply can say who it waits for.
-- One row at most; written by the holder after it takes the lock, removed when it lets go.
CREATE TABLE neo_reconcile.lock_holder (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    host        text        NOT NULL,
    pid         integer     NOT NULL,
    backend_pid integer     NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    command     text        NOT NULL,
    run_by      text        NOT NULL
);

ALTER TABLE neo_reconcile.schema_history
    ADD COLUMN run_id bigint REFERENCES neo_reconcile.runs (id),
    ADD COLUMN error  text;
