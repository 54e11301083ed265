package sqlstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// maxBatch bounds the values of one IN list or the rows of one multi-row INSERT: 500
// rows of the widest table (27 columns) bind 13,500 parameters, inside SQLite's 32,766
// and PostgreSQL's 65,535.
const maxBatch = 500

const checkpointCols = `seq, id, at, root, prev_hash, hash, key_id, signature`

// UnsealedHeads implements store.CheckpointTx. It reads only the window's events, each
// checked against the chain's primary key and the heads index.
func (t *Tx) UnsealedHeads(ctx context.Context, since int64) ([]evidence.Head, error) {
	rows, err := t.q.Query(ctx, `SELECT e.job_id, e.seq, e.hash FROM evidence e
		WHERE e.at >= $1
		AND NOT EXISTS (SELECT 1 FROM evidence n WHERE n.job_id = e.job_id AND n.seq > e.seq)
		AND NOT EXISTS (SELECT 1 FROM checkpoint_heads h WHERE h.job_id = e.job_id AND h.seq >= e.seq)
		ORDER BY e.job_id`, since)
	if err != nil {
		return nil, t.err(err)
	}
	defer rows.Close()
	var out []evidence.Head
	for rows.Next() {
		var h evidence.Head
		if err := rows.Scan(&h.JobID, &h.Seq, &h.Hash); err != nil {
			return nil, t.err(err)
		}
		out = append(out, h)
	}
	return out, t.err(rows.Err())
}

// SealedSeqs implements store.CheckpointTx.
func (t *Tx) SealedSeqs(ctx context.Context, jobIDs []string) (map[string]int64, error) {
	out := map[string]int64{}
	for chunk := range slices.Chunk(jobIDs, maxBatch) {
		q := t.query()
		q.in("job_id", chunk)
		rows, err := t.q.Query(ctx, `SELECT job_id, MAX(seq) FROM checkpoint_heads`+q.sql()+
			` GROUP BY job_id`, q.args...)
		if err != nil {
			return nil, t.err(err)
		}
		for rows.Next() {
			var id string
			var seq int64
			if err := rows.Scan(&id, &seq); err != nil {
				rows.Close()
				return nil, t.err(err)
			}
			out[id] = seq
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, t.err(err)
		}
	}
	return out, nil
}

// LastCheckpoint implements store.CheckpointTx.
func (t *Tx) LastCheckpoint(ctx context.Context) (store.Checkpoint, error) {
	var seq int64
	err := t.q.QueryRow(ctx, `SELECT seq FROM checkpoints ORDER BY seq DESC LIMIT 1`).Scan(&seq)
	if err != nil {
		return store.Checkpoint{}, fmt.Errorf("last checkpoint: %w", t.err(err))
	}
	cps, err := t.ListCheckpoints(ctx, seq-1, 1)
	if err != nil {
		return store.Checkpoint{}, err
	}
	if len(cps) != 1 {
		return store.Checkpoint{}, fmt.Errorf("last checkpoint: %w", store.ErrNotFound)
	}
	return cps[0], nil
}

// AppendCheckpoint implements store.CheckpointTx.
func (t *Tx) AppendCheckpoint(ctx context.Context, c store.Checkpoint) error {
	n, err := t.q.Exec(ctx, `INSERT INTO checkpoints (`+checkpointCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
		c.Seq, c.ID, c.At, c.Root, c.PrevHash, c.Hash, c.KeyID, bytesIn(c.Signature))
	if err != nil {
		return fmt.Errorf("checkpoint %d: %w", c.Seq, t.err(err))
	}
	if n == 0 {
		return fmt.Errorf("checkpoint %d (%s): %w", c.Seq, c.ID, store.ErrConflict)
	}
	if r := c.Rotation; r != nil {
		if _, err := t.q.Exec(ctx, `INSERT INTO checkpoint_rotations (checkpoint_seq, from_key, to_key, endorsement)
			VALUES ($1, $2, $3, $4)`, c.Seq, bytesIn(r.From), bytesIn(r.To), bytesIn(r.Endorsement)); err != nil {
			return fmt.Errorf("checkpoint %d rotation: %w", c.Seq, t.err(err))
		}
	}
	for chunk := range slices.Chunk(c.Heads, maxBatch) {
		args := make([]any, 0, len(chunk)*4)
		for _, h := range chunk {
			args = append(args, c.Seq, h.JobID, h.Seq, h.Hash)
		}
		if _, err := t.q.Exec(ctx, `INSERT INTO checkpoint_heads (checkpoint_seq, job_id, seq, hash)
			VALUES `+valuesList(len(chunk), 4, t.d.Anonymous), args...); err != nil {
			return fmt.Errorf("checkpoint %d heads: %w", c.Seq, t.err(err))
		}
	}
	return nil
}

// ListCheckpoints implements store.CheckpointTx.
func (t *Tx) ListCheckpoints(ctx context.Context, afterSeq int64, limit int) ([]store.Checkpoint, error) {
	q := t.query()
	q.where("seq > %s", afterSeq)
	rows, err := t.q.Query(ctx, `SELECT `+checkpointCols+` FROM checkpoints`+q.sql()+
		` ORDER BY seq`+q.limit(limit), q.args...)
	if err != nil {
		return nil, t.err(err)
	}
	var out []store.Checkpoint
	for rows.Next() {
		var c store.Checkpoint
		if err := rows.Scan(&c.Seq, &c.ID, &c.At, &c.Root, &c.PrevHash, &c.Hash, &c.KeyID, &c.Signature); err != nil {
			rows.Close()
			return nil, t.err(err)
		}
		c.Signature = bytesOut(c.Signature)
		out = append(out, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, t.err(err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	if err := t.loadHeads(ctx, out); err != nil {
		return nil, err
	}
	return out, nil
}

// loadHeads fills in the heads of cps, which are consecutive in Seq order.
func (t *Tx) loadHeads(ctx context.Context, cps []store.Checkpoint) error {
	first, last := cps[0].Seq, cps[len(cps)-1].Seq
	rows, err := t.q.Query(ctx, `SELECT checkpoint_seq, job_id, seq, hash FROM checkpoint_heads
		WHERE checkpoint_seq >= $1 AND checkpoint_seq <= $2`, first, last)
	if err != nil {
		return t.err(err)
	}
	index := make(map[int64]int, len(cps))
	for i, c := range cps {
		index[c.Seq] = i
	}
	for rows.Next() {
		var cs int64
		var h evidence.Head
		if err := rows.Scan(&cs, &h.JobID, &h.Seq, &h.Hash); err != nil {
			rows.Close()
			return t.err(err)
		}
		if i, ok := index[cs]; ok {
			cps[i].Heads = append(cps[i].Heads, h)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return t.err(err)
	}
	if err := t.loadRotations(ctx, cps, index); err != nil {
		return err
	}
	// Byte order, as checkpoints are hashed: the database's collation may differ.
	for i := range cps {
		slices.SortFunc(cps[i].Heads, func(a, b evidence.Head) int { return cmp.Compare(a.JobID, b.JobID) })
	}
	return nil
}

// loadRotations fills in the rotations of cps, which are consecutive in Seq order.
func (t *Tx) loadRotations(ctx context.Context, cps []store.Checkpoint, index map[int64]int) error {
	rows, err := t.q.Query(ctx, `SELECT checkpoint_seq, from_key, to_key, endorsement FROM checkpoint_rotations
		WHERE checkpoint_seq >= $1 AND checkpoint_seq <= $2`, cps[0].Seq, cps[len(cps)-1].Seq)
	if err != nil {
		return t.err(err)
	}
	defer rows.Close()
	for rows.Next() {
		var cs int64
		var from, to, endorsement []byte
		if err := rows.Scan(&cs, &from, &to, &endorsement); err != nil {
			return t.err(err)
		}
		if i, ok := index[cs]; ok {
			cps[i].Rotation = &evidence.Rotation{From: bytesOut(from), To: bytesOut(to), Endorsement: bytesOut(endorsement)}
		}
	}
	return t.err(rows.Err())
}
