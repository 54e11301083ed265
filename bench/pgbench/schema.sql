-- An evidence-shaped table for pgbench: the columns, keys, checks and indexes of
-- Agate's evidence table (store/sqlstore/migrations/0001_init.sql), so one INSERT
-- here costs what one evidence row costs Agate's database.
SET client_min_messages = warning;
DROP TABLE IF EXISTS evidence;
CREATE TABLE evidence (
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
    PRIMARY KEY (job_id, seq)
);
CREATE INDEX evidence_at ON evidence (at, event_id);
CREATE INDEX evidence_kind ON evidence (kind, at, event_id);
