package jobs

import (
	"context"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// ApproveRequest approves a pending job as the calling principal.
type ApproveRequest struct {
	JobID   string
	JobHash string // the hash the approver saw
	Reason  string // optional, at most 512 bytes
}

// ApproveResult is the job after Approve and the approvals of its current revision.
type ApproveResult struct {
	Job             store.Job
	Approvals       []store.Approval // the current revision's, oldest first
	Approval        store.Approval   // the caller's (for a repeat, the one first recorded; zero when the caller never approved)
	AlreadyApproved bool
}

// Approve records p's approval of a pending job, under the first of the rule's roles p
// holds; the job becomes approved once Quorum distinct approvers agreed. It checks, in
// order: content hash, state (repeats are AlreadyApproved and recorded), ttl, snapshot
// drift, role, separation of duties.
func (s *Service) Approve(ctx context.Context, p Principal, r ApproveRequest) (ApproveResult, error) {
	if err := firstErr(checkPrincipal(p), checkJobID("job_id", r.JobID), checkHash(r.JobHash),
		checkReason("reason", r.Reason, false)); err != nil {
		return ApproveResult{}, err
	}
	var out ApproveResult
	var post error
	err := s.write(ctx, p, r.JobID, func(ctx context.Context, tx store.Tx, now int64) (err error) {
		out, post = ApproveResult{}, nil
		j, err := lockJob(ctx, tx, r.JobID)
		if err != nil {
			return err
		}
		out.Job = j
		if post, err = checkContent(ctx, tx, &j, p, now, r.JobHash, "Approve"); post != nil || err != nil {
			return err
		}
		switch {
		case approvedStatus(&j):
			return repeatApproval(ctx, tx, &j, p, now, r.Reason, &out)
		case j.Status == store.StatusRejected:
			post, err = refuse(ctx, tx, &j, p, now, failed(ReasonAlreadyRejected, "the job was rejected"))
			return err
		case j.Status != store.StatusPendingApproval:
			post = notPending(j.Status)
			return nil
		}
		defer func() { out.Job = j }() // the checks below may change the job's status
		if post, err = checkExpiry(ctx, tx, &j, p, now); post != nil || err != nil {
			return err
		}
		if post, err = checkDrift(ctx, tx, &j, p, now); post != nil || err != nil {
			return err
		}
		var role string
		if role, post, err = checkRole(ctx, tx, &j, p, now); post != nil || err != nil {
			return err
		}
		if p.ID == j.Actor || p.ID == j.SubmittedBy {
			post, err = refuse(ctx, tx, &j, p, now, denied(ReasonSelfApproval,
				"the approver must differ from the job's actor and submitter"))
			return err
		}
		approvals, err := tx.ListApprovals(ctx, j.ID, j.Revision)
		if err != nil {
			return err
		}
		if mine, ok := findApproval(approvals, p.ID); ok {
			// Checked before inserting: a failed insert would abort a PostgreSQL transaction.
			out.Approvals, out.Approval = approvals, mine
			return repeatApproval(ctx, tx, &j, p, now, r.Reason, &out)
		}
		a := store.Approval{JobID: j.ID, Revision: j.Revision, Approver: p.ID, Role: role, At: now, Reason: r.Reason}
		if err := tx.InsertApproval(ctx, a); err != nil {
			return err // ErrConflict: the write runs again and finds it
		}
		approvals = append(approvals, a)
		if len(approvals) >= j.Quorum {
			j.Status = store.StatusApproved
			j.ApprovedBy, j.ApprovedRole, j.ApprovedAt = p.ID, role, now
		}
		j.UpdatedAt = now
		if err := tx.UpdateJob(ctx, j); err != nil {
			return err
		}
		out.Approvals, out.Approval = approvals, a
		e := jobEvent(evidence.KindApproval, &j, p, now)
		e.ApprovedBy, e.ApprovedRole, e.ApprovedAt, e.Reason = p.ID, role, now, r.Reason
		return appendEvent(ctx, tx, &e)
	})
	if err != nil {
		return ApproveResult{}, err
	}
	return out, post
}

// repeatApproval answers an Approve of a job already approved (by this caller, or by a
// completed quorum) and records the repeat, which the evidence counts.
func repeatApproval(ctx context.Context, tx store.Tx, j *store.Job, p Principal, now int64, reason string, out *ApproveResult) error {
	if out.Approvals == nil {
		approvals, err := tx.ListApprovals(ctx, j.ID, j.Revision)
		if err != nil {
			return err
		}
		out.Approvals = approvals
		out.Approval, _ = findApproval(approvals, p.ID)
	}
	out.Job, out.AlreadyApproved = *j, true
	e := jobEvent(evidence.KindApproval, j, p, now)
	e.Repeat, e.Reason = true, reason
	if a := out.Approval; a.Approver != "" {
		e.ApprovedBy, e.ApprovedRole, e.ApprovedAt = a.Approver, a.Role, a.At
	}
	return appendEvent(ctx, tx, &e)
}

func findApproval(as []store.Approval, approver string) (store.Approval, bool) {
	for _, a := range as {
		if a.Approver == approver {
			return a, true
		}
	}
	return store.Approval{}, false
}

// RejectRequest vetoes a pending job as the calling principal.
type RejectRequest struct {
	JobID   string
	JobHash string // the hash the approver saw
	Reason  string // required, at most 512 bytes
}

// RejectResult is the job after Reject and who rejected it.
type RejectResult struct {
	Job             store.Job
	AlreadyRejected bool
	RejectedBy      string // the first rejecter
	RejectedRole    string // the role the rejection was made under; empty for a repeat
	RejectedAt      int64  // µs
}

// Reject vetoes a pending job: one Reject suffices, whatever approvals it has so far.
// Content, ttl, drift and role are checked as for Approve; separation of duties is not
// (a veto is always safe). Reject after a completed approval is ALREADY_APPROVED: Cancel
// withdraws an approved job.
func (s *Service) Reject(ctx context.Context, p Principal, r RejectRequest) (RejectResult, error) {
	if err := firstErr(checkPrincipal(p), checkJobID("job_id", r.JobID), checkHash(r.JobHash),
		checkReason("reason", r.Reason, true)); err != nil {
		return RejectResult{}, err
	}
	var out RejectResult
	var post error
	err := s.write(ctx, p, r.JobID, func(ctx context.Context, tx store.Tx, now int64) (err error) {
		out, post = RejectResult{}, nil
		j, err := lockJob(ctx, tx, r.JobID)
		if err != nil {
			return err
		}
		defer func() { out.Job = j }()
		if post, err = checkContent(ctx, tx, &j, p, now, r.JobHash, "Reject"); post != nil || err != nil {
			return err
		}
		switch {
		case j.Status == store.StatusRejected:
			return repeatRejection(ctx, tx, &j, p, now, r.Reason, &out)
		case approvedStatus(&j):
			post, err = refuse(ctx, tx, &j, p, now, failed(ReasonAlreadyApproved,
				"the job is already approved; Cancel withdraws it before Publish"))
			return err
		case j.Status != store.StatusPendingApproval:
			post = notPending(j.Status)
			return nil
		}
		if post, err = checkExpiry(ctx, tx, &j, p, now); post != nil || err != nil {
			return err
		}
		if post, err = checkDrift(ctx, tx, &j, p, now); post != nil || err != nil {
			return err
		}
		var role string
		if role, post, err = checkRole(ctx, tx, &j, p, now); post != nil || err != nil {
			return err
		}
		j.Status, j.UpdatedAt = store.StatusRejected, now
		if err := tx.UpdateJob(ctx, j); err != nil {
			return err
		}
		out.RejectedBy, out.RejectedRole, out.RejectedAt = p.ID, role, now
		e := jobEvent(evidence.KindRejection, &j, p, now)
		e.Reason = r.Reason
		return appendEvent(ctx, tx, &e)
	})
	if err != nil {
		return RejectResult{}, err
	}
	return out, post
}

// repeatRejection answers a Reject of a rejected job with the first rejection, and
// records the repeat.
func repeatRejection(ctx context.Context, tx store.Tx, j *store.Job, p Principal, now int64, reason string, out *RejectResult) error {
	events, err := tx.ListEvents(ctx, j.ID)
	if err != nil {
		return err
	}
	for _, e := range events {
		if e.Kind == evidence.KindRejection && !e.Repeat {
			out.RejectedBy, out.RejectedAt = e.Principal, e.At
		}
	}
	out.AlreadyRejected = true
	e := jobEvent(evidence.KindRejection, j, p, now)
	e.Repeat, e.Reason = true, reason
	return appendEvent(ctx, tx, &e)
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
