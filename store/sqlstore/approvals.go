package sqlstore

import (
	"context"
	"fmt"

	"github.com/agate-pdp/agate/store"
)

// InsertApproval implements store.ApprovalTx. A missing job is ErrNotFound.
func (t *Tx) InsertApproval(ctx context.Context, a store.Approval) error {
	n, err := t.q.Exec(ctx, `INSERT INTO approvals (job_id, revision, approver, role, at, reason)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
		a.JobID, a.Revision, a.Approver, a.Role, a.At, a.Reason)
	if err != nil {
		return t.err(err)
	}
	if n == 0 {
		return fmt.Errorf("approval of %s revision %d by %s: %w", a.JobID, a.Revision, a.Approver, store.ErrConflict)
	}
	return nil
}

// ListApprovals implements store.ApprovalTx.
func (t *Tx) ListApprovals(ctx context.Context, jobID string, revision int) ([]store.Approval, error) {
	rows, err := t.q.Query(ctx, `SELECT job_id, revision, approver, role, at, reason FROM approvals
		WHERE job_id = $1 AND revision = $2 ORDER BY at, approver`, jobID, revision)
	if err != nil {
		return nil, t.err(err)
	}
	defer rows.Close()
	var out []store.Approval
	for rows.Next() {
		var a store.Approval
		if err := rows.Scan(&a.JobID, &a.Revision, &a.Approver, &a.Role, &a.At, &a.Reason); err != nil {
			return nil, t.err(err)
		}
		out = append(out, a)
	}
	return out, t.err(rows.Err())
}
