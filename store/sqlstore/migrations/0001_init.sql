-- Agate's first schema. Written once for every backend in the SQL that PostgreSQL,
-- CockroachDB and SQLite share; the one word that differs, the type of byte columns, is
-- written BYTES_TYPE and replaced by the dialect's (BYTEA or BLOB). Every statement is
-- idempotent, so replaying this file on a migrated database changes nothing.
-- Keys are text ids (snapshot ids, job ids, ULIDs); times are µs since the Unix epoch.

CREATE TABLE IF NOT EXISTS policy_snapshots (
    id         TEXT PRIMARY KEY,
    sha256     TEXT NOT NULL,
    source     BYTES_TYPE NOT NULL,
    rule_count BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS policy_snapshots_created ON policy_snapshots (created_at, id);

-- The active-snapshot pointer: one row, id 1.
CREATE TABLE IF NOT EXISTS active_snapshot (
    id           INT PRIMARY KEY CHECK (id = 1),
    snapshot_id  TEXT NOT NULL REFERENCES policy_snapshots (id),
    activated_at BIGINT NOT NULL,
    activated_by TEXT NOT NULL
);

-- A job's current state; the row Approve and Publish lock. List fields are JSON arrays.
CREATE TABLE IF NOT EXISTS jobs (
    job_id            TEXT PRIMARY KEY,
    topic             TEXT NOT NULL,
    actor             TEXT NOT NULL,
    labels            BYTES_TYPE NOT NULL,
    payload           BYTES_TYPE NOT NULL,
    job_hash          TEXT NOT NULL,
    submitted_by      TEXT NOT NULL,
    trace_id          TEXT NOT NULL,
    status            TEXT NOT NULL,
    decision          TEXT NOT NULL,
    approval_required BOOLEAN NOT NULL,
    rule_id           TEXT NOT NULL,
    reason            TEXT NOT NULL,
    matched_rules     TEXT NOT NULL,
    policy_snapshot   TEXT NOT NULL,
    approval_roles    TEXT NOT NULL,
    quorum            BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    revision          BIGINT NOT NULL,
    approved_by       TEXT NOT NULL,
    approved_role     TEXT NOT NULL,
    approved_at       BIGINT NOT NULL,
    attempt           BIGINT NOT NULL,
    outcome           TEXT NOT NULL,
    decided_at        BIGINT NOT NULL,
    published_at      BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS jobs_status_decided ON jobs (status, decided_at, job_id);
CREATE INDEX IF NOT EXISTS jobs_decided ON jobs (decided_at, job_id);

-- One row per approver of one decision revision, so a quorum counts distinct people.
CREATE TABLE IF NOT EXISTS approvals (
    job_id   TEXT NOT NULL REFERENCES jobs (job_id),
    revision BIGINT NOT NULL,
    approver TEXT NOT NULL,
    role     TEXT NOT NULL,
    at       BIGINT NOT NULL,
    reason   TEXT NOT NULL,
    PRIMARY KEY (job_id, revision, approver)
);

-- Append-only evidence, one hash chain per job_id. A field an event does not carry is
-- NULL, never '' or 0 (the column checks forbid those), so "a required field is NULL" is
-- exactly "the event lacks it". The kind checks below repeat the required fields of the
-- evidence schema, so an incomplete event is refused by the database too and the
-- compliance guide's reference check can be run as SQL.
CREATE TABLE IF NOT EXISTS evidence (
    job_id             TEXT NOT NULL CHECK (job_id <> ''),
    seq                BIGINT NOT NULL CHECK (seq >= 1),
    event_id           TEXT NOT NULL UNIQUE CHECK (event_id <> ''),
    trace_id           TEXT CHECK (trace_id <> ''),
    kind               TEXT NOT NULL CHECK (kind <> ''),
    at                 BIGINT NOT NULL CHECK (at > 0),
    actor              TEXT CHECK (actor <> ''),
    principal          TEXT NOT NULL CHECK (principal <> ''),
    decision           TEXT CHECK (decision <> ''),
    approval_required  BOOLEAN NOT NULL,
    rule_id            TEXT CHECK (rule_id <> ''),
    reason             TEXT CHECK (reason <> ''),
    matched_rules      TEXT CHECK (matched_rules <> ''),
    policy_snapshot    TEXT CHECK (policy_snapshot <> ''),
    previous_snapshot  TEXT CHECK (previous_snapshot <> ''),
    job_hash           TEXT CHECK (job_hash <> ''),
    presented_hash     TEXT CHECK (presented_hash <> ''),
    approved_by        TEXT CHECK (approved_by <> ''),
    approved_role      TEXT CHECK (approved_role <> ''),
    approved_at        BIGINT CHECK (approved_at > 0),
    status             TEXT CHECK (status <> ''),
    attempt            BIGINT CHECK (attempt > 0),
    conflict           TEXT CHECK (conflict <> ''),
    replay_reason_code TEXT CHECK (replay_reason_code <> ''),
    repeat             BOOLEAN NOT NULL,
    prev_hash          TEXT CHECK (prev_hash <> ''),
    hash               TEXT NOT NULL CHECK (hash <> ''),
    PRIMARY KEY (job_id, seq),
    CONSTRAINT evidence_job_fields CHECK (kind = 'policy_activation' OR (trace_id IS NOT NULL
        AND actor IS NOT NULL AND policy_snapshot IS NOT NULL AND job_hash IS NOT NULL
        AND status IS NOT NULL)),
    CONSTRAINT evidence_decision CHECK (kind <> 'decision' OR (decision IS NOT NULL
        AND rule_id IS NOT NULL AND reason IS NOT NULL)),
    CONSTRAINT evidence_approval CHECK (kind <> 'approval' OR (decision IS NOT NULL
        AND approved_by IS NOT NULL AND approved_role IS NOT NULL AND approved_at IS NOT NULL)),
    CONSTRAINT evidence_rejection CHECK (kind <> 'rejection' OR (decision IS NOT NULL
        AND reason IS NOT NULL)),
    CONSTRAINT evidence_publish CHECK (kind <> 'publish' OR (decision IS NOT NULL
        AND attempt IS NOT NULL)),
    CONSTRAINT evidence_replay CHECK (kind <> 'replay' OR (decision IS NOT NULL
        AND attempt IS NOT NULL AND replay_reason_code IS NOT NULL AND reason IS NOT NULL)),
    CONSTRAINT evidence_outcome CHECK (kind <> 'outcome' OR attempt IS NOT NULL),
    CONSTRAINT evidence_conflict CHECK (kind <> 'conflict' OR conflict IS NOT NULL),
    CONSTRAINT evidence_expiry CHECK (kind <> 'expiry' OR decision IS NOT NULL),
    CONSTRAINT evidence_cancel CHECK (kind <> 'cancel' OR reason IS NOT NULL),
    CONSTRAINT evidence_refusal CHECK (kind <> 'refusal' OR (conflict IS NOT NULL
        AND reason IS NOT NULL)),
    CONSTRAINT evidence_policy_activation CHECK (kind <> 'policy_activation'
        OR (policy_snapshot IS NOT NULL AND reason IS NOT NULL))
);

CREATE INDEX IF NOT EXISTS evidence_at ON evidence (at, event_id);
CREATE INDEX IF NOT EXISTS evidence_kind ON evidence (kind, at, event_id);
