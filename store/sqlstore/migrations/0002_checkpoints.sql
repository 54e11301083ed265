-- Signed checkpoints over the heads of the evidence chains (see evidence.Checkpoint).
-- Each checkpoint links to the one before it by prev_hash ('' for the first). Sealers on
-- several replicas race for the next seq; the primary key lets exactly one of them win.
CREATE TABLE IF NOT EXISTS checkpoints (
    seq       BIGINT PRIMARY KEY,
    id        TEXT NOT NULL UNIQUE,
    at        BIGINT NOT NULL,
    root      TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    signature BYTES_TYPE NOT NULL
);

-- One row per chain a checkpoint sealed: the chain's head (last event) at sealing time.
-- The index answers "how far is this chain sealed" without reading the checkpoints.
CREATE TABLE IF NOT EXISTS checkpoint_heads (
    checkpoint_seq BIGINT NOT NULL REFERENCES checkpoints (seq),
    job_id         TEXT NOT NULL,
    seq            BIGINT NOT NULL,
    hash           TEXT NOT NULL,
    PRIMARY KEY (checkpoint_seq, job_id)
);

CREATE INDEX IF NOT EXISTS checkpoint_heads_job ON checkpoint_heads (job_id, seq);
