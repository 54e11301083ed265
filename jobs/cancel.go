package jobs

import (
	"context"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// CancelRequest withdraws a job before Publish.
type CancelRequest struct {
	JobID  string
	Reason string // required, at most 512 bytes
}

// CancelResult is the job after Cancel and who cancelled it.
type CancelResult struct {
	Job              store.Job
	AlreadyCancelled bool
	CancelledBy      string // the first canceller
	CancelledAt      int64  // µs
}

// Cancel withdraws a pending or approved-but-unpublished job. Only the job's submitter
// or an operator has standing (RoleOperator); it reads authorize → state → write.
func (s *Service) Cancel(ctx context.Context, p Principal, r CancelRequest) (CancelResult, error) {
	if err := firstErr(checkPrincipal(p), checkJobID("job_id", r.JobID), checkReason("reason", r.Reason, true)); err != nil {
		return CancelResult{}, err
	}
	var out CancelResult
	c := call{name: "Cancel", jobID: r.JobID}
	err := s.onJob(ctx, p, c, mayCancel, func(ctx context.Context, tx store.Tx, j *store.Job, now int64) (err error) {
		out = CancelResult{Job: *j}
		switch j.Status {
		case store.StatusPendingApproval, store.StatusApproved:
		case store.StatusCancelled:
			out.AlreadyCancelled = true
			out.CancelledBy, out.CancelledAt, err = firstCancel(ctx, tx, j.ID)
			return err
		default:
			return notPending(j.Status)
		}
		j.Status, j.UpdatedAt = store.StatusCancelled, now
		if err := tx.UpdateJob(ctx, *j); err != nil {
			return err
		}
		out.Job, out.CancelledBy, out.CancelledAt = *j, p.ID, now
		e := jobEvent(evidence.KindCancel, j, p, now)
		e.Reason = r.Reason
		return appendEvent(ctx, tx, &e)
	})
	if err != nil {
		return CancelResult{}, err
	}
	return out, nil
}

func firstCancel(ctx context.Context, tx store.Tx, jobID string) (string, int64, error) {
	events, err := tx.ListEvents(ctx, jobID)
	if err != nil {
		return "", 0, err
	}
	for _, e := range events {
		if e.Kind == evidence.KindCancel {
			return e.Principal, e.At, nil
		}
	}
	return "", 0, nil
}
