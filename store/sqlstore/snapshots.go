package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
)

const snapshotCols = "id, sha256, source, rule_count, created_at, created_by"

func (t *Tx) scanSnapshot(r Row) (snapshots.Snapshot, error) {
	var s snapshots.Snapshot
	var created int64
	if err := r.Scan(&s.ID, &s.SHA256, &s.Source, &s.RuleCount, &created, &s.CreatedBy); err != nil {
		return snapshots.Snapshot{}, t.err(err)
	}
	s.Source = bytesOut(s.Source)
	s.CreatedAt = time.UnixMicro(created).UTC()
	return s, nil
}

// PutSnapshot implements store.SnapshotTx. A different snapshot under an existing id
// (digests equal in their first 16 hex digits) is ErrConflict.
func (t *Tx) PutSnapshot(ctx context.Context, s snapshots.Snapshot) (bool, error) {
	if s.ID == "" {
		return false, errors.New("store: snapshot without id")
	}
	n, err := t.q.Exec(ctx, `INSERT INTO policy_snapshots (`+snapshotCols+`)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
		s.ID, s.SHA256, bytesIn(s.Source), s.RuleCount, s.CreatedAt.UnixMicro(), s.CreatedBy)
	if err != nil {
		return false, t.err(err)
	}
	if n == 1 {
		return true, nil
	}
	// Same id, so the same content, unless two digests share their first 16 hex digits.
	var sha string
	if err := t.q.QueryRow(ctx, `SELECT sha256 FROM policy_snapshots WHERE id = $1`, s.ID).Scan(&sha); err != nil {
		return false, t.err(err)
	}
	if sha != s.SHA256 {
		return false, fmt.Errorf("snapshot %s holds other content (sha256 %s): %w", s.ID, sha, store.ErrConflict)
	}
	return false, nil
}

// GetSnapshot implements store.SnapshotTx.
func (t *Tx) GetSnapshot(ctx context.Context, id string) (snapshots.Snapshot, error) {
	s, err := t.scanSnapshot(t.q.QueryRow(ctx,
		`SELECT `+snapshotCols+` FROM policy_snapshots WHERE id = $1`, id))
	if err != nil {
		return s, fmt.Errorf("snapshot %s: %w", id, err)
	}
	return s, nil
}

// ListSnapshots implements store.SnapshotTx.
func (t *Tx) ListSnapshots(ctx context.Context, after string, limit int) ([]snapshots.Snapshot, error) {
	q := t.query()
	if after != "" {
		var created int64
		err := t.q.QueryRow(ctx, `SELECT created_at FROM policy_snapshots WHERE id = $1`, after).Scan(&created)
		if err != nil {
			return nil, fmt.Errorf("snapshot cursor %s: %w", after, t.err(err))
		}
		q.where("(created_at < %s OR (created_at = %s AND id < %s))", created, created, after)
	}
	sql := `SELECT ` + snapshotCols + ` FROM policy_snapshots` + q.sql() +
		` ORDER BY created_at DESC, id DESC` + q.limit(limit)
	rows, err := t.q.Query(ctx, sql, q.args...)
	if err != nil {
		return nil, t.err(err)
	}
	defer rows.Close()
	var out []snapshots.Snapshot
	for rows.Next() {
		s, err := t.scanSnapshot(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, t.err(rows.Err())
}

// ActiveSnapshotID implements store.SnapshotTx.
func (t *Tx) ActiveSnapshotID(ctx context.Context) (string, error) {
	if t.active != nil {
		if *t.active == "" {
			return "", snapshots.ErrNoActive
		}
		return *t.active, nil
	}
	var id string
	err := t.q.QueryRow(ctx, `SELECT snapshot_id FROM active_snapshot WHERE id = 1`).Scan(&id)
	if err != nil {
		if err = t.err(err); errors.Is(err, store.ErrNotFound) {
			return "", snapshots.ErrNoActive
		}
		return "", err
	}
	return id, nil
}

// ActiveSnapshot returns the active snapshot, or snapshots.ErrNoActive, and the
// database's clock read by the same statement (µs); it backs the store's
// snapshots.Source. Replicas run it every --snapshot-refresh, so measuring their clock
// against the database's costs no round trip of its own. The one-row derived table
// makes the statement return the time when no snapshot is active.
func (t *Tx) ActiveSnapshot(ctx context.Context) (snapshots.Snapshot, int64, error) {
	var now int64
	var id, sha, by *string
	var source []byte
	var rules, created *int64
	err := t.q.QueryRow(ctx, `SELECT `+t.d.NowMicros+`, s.id, s.sha256, s.source, s.rule_count,
		s.created_at, s.created_by FROM (SELECT 1 AS one) x
		LEFT JOIN active_snapshot a ON a.id = 1
		LEFT JOIN policy_snapshots s ON s.id = a.snapshot_id`).Scan(&now, &id, &sha, &source, &rules, &created, &by)
	if err != nil {
		return snapshots.Snapshot{}, 0, t.err(err)
	}
	if id == nil || sha == nil || rules == nil || created == nil || by == nil {
		return snapshots.Snapshot{}, now, snapshots.ErrNoActive
	}
	return snapshots.Snapshot{ID: *id, SHA256: *sha, Source: bytesOut(source), RuleCount: int(*rules),
		CreatedAt: time.UnixMicro(*created).UTC(), CreatedBy: *by}, now, nil
}

// SetActiveSnapshot implements store.SnapshotTx.
func (t *Tx) SetActiveSnapshot(ctx context.Context, id string, at time.Time, by string) error {
	var one int
	if err := t.q.QueryRow(ctx, `SELECT 1 FROM policy_snapshots WHERE id = $1`, id).Scan(&one); err != nil {
		return fmt.Errorf("snapshot %s: %w", id, t.err(err))
	}
	_, err := t.q.Exec(ctx, `INSERT INTO active_snapshot (id, snapshot_id, activated_at, activated_by)
		VALUES (1, $1, $2, $3) ON CONFLICT (id) DO UPDATE SET snapshot_id = excluded.snapshot_id,
		activated_at = excluded.activated_at, activated_by = excluded.activated_by`,
		id, at.UnixMicro(), by)
	if err != nil {
		return t.err(err)
	}
	t.active = &id
	return nil
}
