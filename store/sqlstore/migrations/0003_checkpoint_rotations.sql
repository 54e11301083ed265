-- A key rotation rides on the first checkpoint the new key signs (see
-- evidence.Rotation): the old and new public keys and the old key's endorsement.
-- Checkpoints without a rotation have no row here, so their hashes are unchanged.
CREATE TABLE IF NOT EXISTS checkpoint_rotations (
    checkpoint_seq BIGINT PRIMARY KEY REFERENCES checkpoints (seq),
    from_key       BYTES_TYPE NOT NULL,
    to_key         BYTES_TYPE NOT NULL,
    endorsement    BYTES_TYPE NOT NULL
);
