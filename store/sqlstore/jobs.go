package sqlstore

import (
	"context"
	"fmt"

	"github.com/agate-pdp/agate/store"
)

const jobCols = `job_id, topic, actor, labels, payload, job_hash, submitted_by, trace_id,
	status, decision, approval_required, rule_id, reason, matched_rules, policy_snapshot,
	approval_roles, quorum, expires_at, revision, approved_by, approved_role, approved_at,
	attempt, outcome, decided_at, published_at, updated_at`

// scanJob reads jobCols, then extra columns into extra.
func (t *Tx) scanJob(r Row, extra ...any) (store.Job, error) {
	var j store.Job
	var matched, roles string
	err := r.Scan(append([]any{&j.ID, &j.Topic, &j.Actor, &j.Labels, &j.Payload, &j.Hash, &j.SubmittedBy,
		&j.TraceID, &j.Status, &j.Decision, &j.ApprovalRequired, &j.RuleID, &j.Reason, &matched,
		&j.Snapshot, &roles, &j.Quorum, &j.ExpiresAt, &j.Revision, &j.ApprovedBy, &j.ApprovedRole,
		&j.ApprovedAt, &j.Attempt, &j.Outcome, &j.DecidedAt, &j.PublishedAt, &j.UpdatedAt}, extra...)...)
	if err != nil {
		return store.Job{}, t.err(err)
	}
	j.Labels, j.Payload = bytesOut(j.Labels), bytesOut(j.Payload)
	if j.MatchedRules, err = decodeList(matched); err != nil {
		return store.Job{}, err
	}
	if j.ApprovalRoles, err = decodeList(roles); err != nil {
		return store.Job{}, err
	}
	return j, nil
}

// lockExtras are read with a locked job: its chain head and the active snapshot, which
// a transaction that locks a job goes on to need (to append its event, to check drift).
// Reading them in the same statement spares two round trips per write; the transaction
// answers ChainHead and ActiveSnapshotID from them (see Tx.heads). FOR UPDATE locks only
// the tables in FROM: scalar subqueries in the select list are read, not locked, on
// PostgreSQL and CockroachDB alike, so the active pointer does not become a lock every
// write queues on.
const lockExtras = `,
	COALESCE((SELECT seq FROM evidence WHERE job_id = $1 ORDER BY seq DESC LIMIT 1), 0),
	COALESCE((SELECT hash FROM evidence WHERE job_id = $1 ORDER BY seq DESC LIMIT 1), ''),
	COALESCE((SELECT snapshot_id FROM active_snapshot WHERE id = 1), '')`

// GetJob implements store.JobTx.
func (t *Tx) GetJob(ctx context.Context, id string, forUpdate bool) (store.Job, error) {
	if !forUpdate {
		j, err := t.scanJob(t.q.QueryRow(ctx, `SELECT `+jobCols+` FROM jobs WHERE job_id = $1`, id))
		if err != nil {
			return j, fmt.Errorf("job %s: %w", id, err)
		}
		return j, nil
	}
	var head chainHead
	var active string
	j, err := t.scanJob(t.q.QueryRow(ctx, `SELECT `+jobCols+lockExtras+` FROM jobs WHERE job_id = $1`+t.d.ForUpdate, id),
		&head.seq, &head.hash, &active)
	if err != nil {
		return j, fmt.Errorf("job %s: %w", id, err)
	}
	t.setHead(id, head)
	t.active = &active
	t.lock(id)
	return j, nil
}

// InsertJob implements store.JobTx.
func (t *Tx) InsertJob(ctx context.Context, j store.Job) error {
	n, err := t.q.Exec(ctx, `INSERT INTO jobs (`+jobCols+`) VALUES `+oneJobRow+
		` ON CONFLICT DO NOTHING`, jobArgs(&j)...)
	if err != nil {
		return t.err(err)
	}
	if n == 0 {
		return fmt.Errorf("job %s: %w", j.ID, store.ErrConflict)
	}
	return nil
}

// jobArgs returns the values of jobCols for j.
func jobArgs(j *store.Job) []any {
	return []any{j.ID, j.Topic, j.Actor, bytesIn(j.Labels), bytesIn(j.Payload), j.Hash, j.SubmittedBy,
		j.TraceID, string(j.Status), j.Decision, j.ApprovalRequired, j.RuleID, j.Reason,
		encodeList(j.MatchedRules), j.Snapshot, encodeList(j.ApprovalRoles), j.Quorum,
		j.ExpiresAt, j.Revision, j.ApprovedBy, j.ApprovedRole, j.ApprovedAt, j.Attempt,
		j.Outcome, j.DecidedAt, j.PublishedAt, j.UpdatedAt}
}

// UpdateJob implements store.JobTx.
func (t *Tx) UpdateJob(ctx context.Context, j store.Job) error {
	n, err := t.q.Exec(ctx, `UPDATE jobs SET trace_id = $2, status = $3, decision = $4,
		approval_required = $5, rule_id = $6, reason = $7, matched_rules = $8,
		policy_snapshot = $9, approval_roles = $10, quorum = $11, expires_at = $12,
		revision = $13, approved_by = $14, approved_role = $15, approved_at = $16,
		attempt = $17, outcome = $18, decided_at = $19, published_at = $20, updated_at = $21
		WHERE job_id = $1`,
		j.ID, j.TraceID, string(j.Status), j.Decision, j.ApprovalRequired, j.RuleID, j.Reason,
		encodeList(j.MatchedRules), j.Snapshot, encodeList(j.ApprovalRoles), j.Quorum,
		j.ExpiresAt, j.Revision, j.ApprovedBy, j.ApprovedRole, j.ApprovedAt, j.Attempt,
		j.Outcome, j.DecidedAt, j.PublishedAt, j.UpdatedAt)
	if err != nil {
		return t.err(err)
	}
	if n == 0 {
		return fmt.Errorf("job %s: %w", j.ID, store.ErrNotFound)
	}
	return nil
}

// ListJobs implements store.JobTx.
func (t *Tx) ListJobs(ctx context.Context, jq store.JobQuery) ([]store.Job, error) {
	q := t.query()
	q.in("status", statusStrings(jq.Statuses))
	q.eq("topic", jq.Topic)
	q.eq("actor", jq.Actor)
	q.eq("rule_id", jq.RuleID)
	q.eq("policy_snapshot", jq.Snapshot)
	if jq.DecidedSince > 0 {
		q.where("decided_at >= %s", jq.DecidedSince)
	}
	if jq.DecidedBefore > 0 {
		q.where("decided_at < %s", jq.DecidedBefore)
	}
	if jq.UpdatedBefore > 0 {
		q.where("updated_at < %s", jq.UpdatedBefore)
	}
	q.after("decided_at", "job_id", jq.AfterDecidedAt, jq.AfterID)
	sql := `SELECT ` + jobCols + ` FROM jobs` + q.sql() + ` ORDER BY decided_at, job_id` + q.limit(jq.Limit)
	rows, err := t.q.Query(ctx, sql, q.args...)
	if err != nil {
		return nil, t.err(err)
	}
	defer rows.Close()
	var out []store.Job
	for rows.Next() {
		j, err := t.scanJob(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, t.err(rows.Err())
}

// deadlineStatuses are the statuses the partial index jobs_due holds: those whose
// deadline means something. The text is the index's predicate, word for word, so that
// every backend's planner can prove a query that repeats it may use the index.
const deadlineStatuses = `status IN ('pending_approval', 'approved')`

// DueJobs implements store.JobTx. The partial index jobs_due answers it for the statuses
// with a deadline; any other status is answered by a scan, which nothing does on a hot
// path.
func (t *Tx) DueJobs(ctx context.Context, status store.Status, now int64, limit int) ([]string, error) {
	q := t.query()
	q.where("status = %s", string(status))
	if status == store.StatusPendingApproval || status == store.StatusApproved {
		q.where(deadlineStatuses)
	}
	q.where("expires_at > 0 AND expires_at <= %s", now)
	rows, err := t.q.Query(ctx, `SELECT job_id FROM jobs`+q.sql()+` ORDER BY expires_at, job_id`+q.limit(limit), q.args...)
	if err != nil {
		return nil, t.err(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, t.err(err)
		}
		out = append(out, id)
	}
	return out, t.err(rows.Err())
}

// CountJobs implements store.JobTx. No statuses counts jobs in any status.
func (t *Tx) CountJobs(ctx context.Context, statuses []store.Status, notSnapshot string) (int, error) {
	q := t.query()
	q.in("status", statusStrings(statuses))
	q.where("policy_snapshot <> %s", notSnapshot)
	var n int64
	if err := t.q.QueryRow(ctx, `SELECT COUNT(*) FROM jobs`+q.sql(), q.args...).Scan(&n); err != nil {
		return 0, t.err(err)
	}
	return int(n), nil
}

func statusStrings(ss []store.Status) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return out
}
