-- The transactional outbox: one row per transition someone waits for, written in the
-- transition's own transaction, then leased, delivered and settled by the deliverers of
-- every replica. The id is a hash of the evidence event's id, so rows spread over the
-- key space instead of piling onto its end as a time-ordered key would. Lists are JSON
-- arrays; times are µs since the Unix epoch, 0 for unset.
CREATE TABLE IF NOT EXISTS notifications (
    id           TEXT PRIMARY KEY,
    job_id       TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    kind         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    state        TEXT NOT NULL,
    attempts     BIGINT NOT NULL,
    next_at      BIGINT NOT NULL,
    claimed_by   TEXT NOT NULL,
    claim_until  BIGINT NOT NULL,
    delivered_to TEXT NOT NULL,
    last_error   TEXT NOT NULL,
    done_at      BIGINT NOT NULL
);

-- Deliverers look for due pending rows; operators and pruning page over finished ones.
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (state, next_at, id);
CREATE INDEX IF NOT EXISTS notifications_done ON notifications (state, done_at, id);
