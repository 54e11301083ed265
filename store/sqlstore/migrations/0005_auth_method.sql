-- auth_method: how the principal of an event authenticated ("token", "certificate",
-- "certificate+token" or "oidc:<issuer>"). Events written before it existed keep it NULL,
-- and an event's hash covers it only when it is set, so their hashes are unchanged.
-- SQLite cannot add a column idempotently, so the table is rebuilt as in 0004, the same
-- way on every backend; its constraints and indexes are unchanged. Every statement may
-- run again harmlessly: the copy only fills an empty table, and the rename follows the
-- drop.
CREATE TABLE IF NOT EXISTS evidence_v5 (
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
    auth_method        TEXT CHECK (auth_method <> ''),
    PRIMARY KEY (job_id, seq),
    CONSTRAINT evidence_job_fields CHECK (kind = 'policy_activation'
        OR (kind = 'refusal' AND job_id LIKE '@principal:%')
        OR (trace_id IS NOT NULL AND actor IS NOT NULL AND policy_snapshot IS NOT NULL
            AND job_hash IS NOT NULL AND status IS NOT NULL)),
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

INSERT INTO evidence_v5 SELECT *, NULL FROM evidence WHERE NOT EXISTS (SELECT 1 FROM evidence_v5);
DROP TABLE IF EXISTS evidence;
ALTER TABLE evidence_v5 RENAME TO evidence;
CREATE INDEX IF NOT EXISTS evidence_at ON evidence (at, event_id);
CREATE INDEX IF NOT EXISTS evidence_kind ON evidence (kind, at, event_id);
