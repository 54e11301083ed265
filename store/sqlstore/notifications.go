package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/agate-pdp/agate/store"
)

const notificationCols = `id, job_id, event_id, kind, created_at, state, attempts, next_at,
	claimed_by, claim_until, delivered_to, last_error, done_at`

var notificationColN = strings.Count(notificationCols, ",") + 1

func notificationArgs(n *store.Notification) []any {
	return []any{n.ID, n.JobID, n.EventID, n.Kind, n.CreatedAt, string(n.State), n.Attempts, n.NextAt,
		n.ClaimedBy, n.ClaimUntil, encodeList(n.DeliveredTo), n.LastError, n.DoneAt}
}

func (t *Tx) scanNotification(r Row) (store.Notification, error) {
	var n store.Notification
	var to string
	if err := r.Scan(&n.ID, &n.JobID, &n.EventID, &n.Kind, &n.CreatedAt, &n.State, &n.Attempts, &n.NextAt,
		&n.ClaimedBy, &n.ClaimUntil, &to, &n.LastError, &n.DoneAt); err != nil {
		return store.Notification{}, t.err(err)
	}
	var err error
	n.DeliveredTo, err = decodeList(to)
	return n, err
}

// InsertNotifications implements store.NotificationTx: one multi-row INSERT per maxBatch
// rows, so a group-committed batch of Decides adds one statement for all its rows.
func (t *Tx) InsertNotifications(ctx context.Context, ns []store.Notification) error {
	for chunk := range slices.Chunk(ns, maxBatch) {
		args := make([]any, 0, len(chunk)*notificationColN)
		for i := range chunk {
			args = append(args, notificationArgs(&chunk[i])...)
		}
		n, err := t.q.Exec(ctx, `INSERT INTO notifications (`+notificationCols+`) VALUES `+
			valuesList(len(chunk), notificationColN, t.d.Anonymous)+` ON CONFLICT DO NOTHING`, args...)
		if err != nil {
			return fmt.Errorf("%d notifications from %s: %w", len(chunk), chunk[0].ID, t.err(err))
		}
		if n != int64(len(chunk)) {
			return fmt.Errorf("%d of %d notifications from %s already stored: %w", int64(len(chunk))-n, len(chunk), chunk[0].ID, store.ErrConflict)
		}
	}
	return nil
}

// ClaimNotifications implements store.NotificationTx in one statement. Concurrent
// claims of a row on PostgreSQL block on its row lock and then fail serialization, so
// the loser runs again and sees the lease; SQLite has one writer.
func (t *Tx) ClaimNotifications(ctx context.Context, owner string, now, until int64, limit int) ([]store.Notification, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := t.q.Query(ctx, `UPDATE notifications SET claimed_by = $1, claim_until = $2
		WHERE id IN (SELECT id FROM notifications WHERE state = 'pending' AND next_at <= $3
			AND claim_until <= $3 ORDER BY next_at, id LIMIT $4)
		RETURNING `+notificationCols, owner, until, now, limit)
	if err != nil {
		return nil, t.err(err)
	}
	out, err := t.collectNotifications(rows)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b store.Notification) int {
		if a.NextAt != b.NextAt {
			return compare(a.NextAt, b.NextAt)
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

func compare(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// SettleNotification implements store.NotificationTx.
func (t *Tx) SettleNotification(ctx context.Context, owner string, n store.Notification) error {
	c, err := t.q.Exec(ctx, `UPDATE notifications SET state = $1, attempts = $2, next_at = $3,
		delivered_to = $4, last_error = $5, done_at = $6, claimed_by = '', claim_until = 0
		WHERE id = $7 AND state = 'pending' AND claimed_by = $8`,
		string(n.State), n.Attempts, n.NextAt, encodeList(n.DeliveredTo), n.LastError, n.DoneAt, n.ID, owner)
	if err != nil {
		return t.err(err)
	}
	if c == 0 {
		return fmt.Errorf("notification %s is not claimed by %s: %w", n.ID, owner, store.ErrConflict)
	}
	return nil
}

// ListNotifications implements store.NotificationTx.
func (t *Tx) ListNotifications(ctx context.Context, nq store.NotificationQuery) ([]store.Notification, error) {
	q := t.query()
	q.eq("state", string(nq.State))
	q.eq("job_id", nq.JobID)
	q.after("done_at", "id", nq.AfterDoneAt, nq.AfterID)
	rows, err := t.q.Query(ctx, `SELECT `+notificationCols+` FROM notifications`+q.sql()+
		` ORDER BY done_at, id`+q.limit(nq.Limit), q.args...)
	if err != nil {
		return nil, t.err(err)
	}
	return t.collectNotifications(rows)
}

func (t *Tx) collectNotifications(rows Rows) ([]store.Notification, error) {
	defer rows.Close()
	var out []store.Notification
	for rows.Next() {
		n, err := t.scanNotification(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, t.err(rows.Err())
}

// CountNotifications implements store.NotificationTx.
func (t *Tx) CountNotifications(ctx context.Context) (map[store.NotificationState]int, error) {
	rows, err := t.q.Query(ctx, `SELECT state, COUNT(*) FROM notifications GROUP BY state`)
	if err != nil {
		return nil, t.err(err)
	}
	defer rows.Close()
	out := map[store.NotificationState]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, t.err(err)
		}
		out[store.NotificationState(s)] = n
	}
	return out, t.err(rows.Err())
}

// PruneNotifications implements store.NotificationTx.
func (t *Tx) PruneNotifications(ctx context.Context, before int64, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	n, err := t.q.Exec(ctx, `DELETE FROM notifications WHERE id IN (SELECT id FROM notifications
		WHERE (state IN ('delivered', 'dead') AND done_at < $1) OR (state = 'pending' AND created_at < $1)
		LIMIT $2)`, before, limit)
	if err != nil {
		return 0, t.err(err)
	}
	return int(n), nil
}

// RequeueNotifications implements store.NotificationTx.
func (t *Tx) RequeueNotifications(ctx context.Context, ids []string, now int64) (int, error) {
	q := `UPDATE notifications SET state = 'pending', attempts = 0, next_at = $1, last_error = '',
		done_at = 0, claimed_by = '', claim_until = 0 WHERE state = 'dead'`
	args := []any{now}
	if len(ids) > 0 {
		ph := make([]string, len(ids))
		for i, id := range ids {
			args = append(args, id)
			ph[i] = fmt.Sprintf("$%d", i+2)
		}
		q += ` AND id IN (` + strings.Join(ph, ", ") + `)`
	}
	n, err := t.q.Exec(ctx, q, args...)
	if err != nil {
		return 0, t.err(err)
	}
	return int(n), nil
}
