package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/agate-pdp/agate/store"
)

// The statements of a lifecycle batch: the jobs it works on are locked in one
// statement, and what it writes goes in one statement per table.

// lockManyExtras is lockExtras for a statement that locks many jobs: each row brings its
// own chain head.
const lockManyExtras = `,
	COALESCE((SELECT seq FROM evidence WHERE evidence.job_id = jobs.job_id ORDER BY seq DESC LIMIT 1), 0),
	COALESCE((SELECT hash FROM evidence WHERE evidence.job_id = jobs.job_id ORDER BY seq DESC LIMIT 1), ''),
	COALESCE((SELECT snapshot_id FROM active_snapshot WHERE id = 1), '')`

// GetJobs implements store.JobTx. With forUpdate the rows are locked in job id order by
// one statement, so two transactions locking overlapping sets wait for each other rather
// than deadlock.
func (t *Tx) GetJobs(ctx context.Context, ids []string, forUpdate bool) ([]store.Job, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if seen[id] {
			return nil, fmt.Errorf("store: GetJobs: job %s given twice", id)
		}
		seen[id] = true
	}
	var out []store.Job
	for chunk := range slices.Chunk(ids, maxBatch) {
		q := t.query()
		q.in("job_id", chunk)
		cols, lock := jobCols, ""
		if forUpdate {
			cols, lock = jobCols+lockManyExtras, t.d.ForUpdate
		}
		rows, err := t.q.Query(ctx, `SELECT `+cols+` FROM jobs`+q.sql()+` ORDER BY job_id`+lock, q.args...)
		if err != nil {
			return nil, t.err(err)
		}
		for rows.Next() {
			var head chainHead
			var active string
			var extra []any
			if forUpdate {
				extra = []any{&head.seq, &head.hash, &active}
			}
			j, err := t.scanJob(rows, extra...)
			if err != nil {
				rows.Close()
				return nil, err
			}
			if forUpdate {
				t.setHead(j.ID, head)
				t.active = &active
				t.lock(j.ID)
			}
			out = append(out, j)
		}
		rows.Close()
		if err := t.err(rows.Err()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// lock remembers that this transaction holds id's row lock.
func (t *Tx) lock(id string) {
	if t.locked == nil {
		t.locked = make(map[string]bool)
	}
	t.locked[id] = true
}

// mutableJobCols are the columns UpdateJob and UpdateJobs overwrite.
var mutableJobCols = []string{"trace_id", "status", "decision", "approval_required", "rule_id", "reason",
	"matched_rules", "policy_snapshot", "approval_roles", "quorum", "expires_at", "revision", "approved_by",
	"approved_role", "approved_at", "attempt", "outcome", "decided_at", "published_at", "updated_at"}

// updateJobsSet is the SET list of UpdateJobs' upsert: every mutable column from the row
// proposed for it.
var updateJobsSet = func() string {
	set := make([]string, len(mutableJobCols))
	for i, c := range mutableJobCols {
		set[i] = c + " = excluded." + c
	}
	return strings.Join(set, ", ")
}()

// UpdateJobs implements store.JobTx. A multi-row UPDATE would need a VALUES list typed
// column by column, which the three databases spell differently; an INSERT … ON
// CONFLICT (job_id) DO UPDATE takes its types from the table, and runs unchanged on
// each. It only ever updates: every job must be locked by this transaction, so its row
// exists.
func (t *Tx) UpdateJobs(ctx context.Context, js []store.Job) error {
	seen := make(map[string]bool, len(js))
	for i := range js {
		id := js[i].ID
		if !t.locked[id] {
			return fmt.Errorf("job %s is not locked by this transaction: %w", id, store.ErrNotFound)
		}
		if seen[id] {
			return fmt.Errorf("store: UpdateJobs: job %s given twice", id)
		}
		seen[id] = true
	}
	for chunk := range slices.Chunk(js, maxBatch) {
		args := make([]any, 0, len(chunk)*jobColN)
		for i := range chunk {
			args = append(args, jobArgs(&chunk[i])...)
		}
		n, err := t.q.Exec(ctx, `INSERT INTO jobs (`+jobCols+`) VALUES `+valuesList(len(chunk), jobColN, t.d.Anonymous)+
			` ON CONFLICT (job_id) DO UPDATE SET `+updateJobsSet, args...)
		if err != nil {
			return fmt.Errorf("updating %d jobs from %s: %w", len(chunk), chunk[0].ID, t.err(err))
		}
		if n != int64(len(chunk)) {
			return fmt.Errorf("updating %d jobs from %s: %d rows changed", len(chunk), chunk[0].ID, n)
		}
	}
	return nil
}

const approvalCols = `job_id, revision, approver, role, at, reason`

// InsertApprovals implements store.ApprovalTx: one multi-row INSERT per maxBatch rows.
func (t *Tx) InsertApprovals(ctx context.Context, as []store.Approval) error {
	const cols = 6
	for chunk := range slices.Chunk(as, maxBatch) {
		args := make([]any, 0, len(chunk)*cols)
		for _, a := range chunk {
			args = append(args, a.JobID, a.Revision, a.Approver, a.Role, a.At, a.Reason)
		}
		n, err := t.q.Exec(ctx, `INSERT INTO approvals (`+approvalCols+`) VALUES `+
			valuesList(len(chunk), cols, t.d.Anonymous)+` ON CONFLICT DO NOTHING`, args...)
		if err != nil {
			return fmt.Errorf("%d approvals from %s: %w", len(chunk), chunk[0].JobID, t.err(err))
		}
		if n != int64(len(chunk)) {
			return fmt.Errorf("%d of %d approvals from %s already stored: %w", int64(len(chunk))-n, len(chunk), chunk[0].JobID, store.ErrConflict)
		}
	}
	return nil
}

// ListApprovalsOf implements store.ApprovalTx.
func (t *Tx) ListApprovalsOf(ctx context.Context, jobIDs []string) ([]store.Approval, error) {
	var out []store.Approval
	for chunk := range slices.Chunk(jobIDs, maxBatch) {
		q := t.query()
		q.in("job_id", chunk)
		rows, err := t.q.Query(ctx, `SELECT `+approvalCols+` FROM approvals`+q.sql()+
			` ORDER BY job_id, revision, at, approver`, q.args...)
		if err != nil {
			return nil, t.err(err)
		}
		for rows.Next() {
			var a store.Approval
			if err := rows.Scan(&a.JobID, &a.Revision, &a.Approver, &a.Role, &a.At, &a.Reason); err != nil {
				rows.Close()
				return nil, t.err(err)
			}
			out = append(out, a)
		}
		rows.Close()
		if err := t.err(rows.Err()); err != nil {
			return nil, err
		}
	}
	return out, nil
}
