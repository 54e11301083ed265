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
// may approve under; the job becomes approved once Quorum distinct approvers agreed. It
// reads authorize (onJob) → content hash → who (separation of duties, role) → state
// (the caller's own repeat is AlreadyApproved and recorded) → ttl → snapshot drift →
// write.
func (s *Service) Approve(ctx context.Context, p Principal, r ApproveRequest) (ApproveResult, error) {
	if err := firstErr(checkPrincipal(p), checkJobID("job_id", r.JobID), checkHash(r.JobHash),
		checkReason("reason", r.Reason, false)); err != nil {
		return ApproveResult{}, err
	}
	var out ApproveResult
	c := call{name: "Approve", jobID: r.JobID, presented: r.JobHash}
	err := s.onJob(ctx, p, c, mayDecideOn, func(ctx context.Context, tx store.Tx, j *store.Job, now int64) error {
		out = ApproveResult{Job: *j}
		defer func() { out.Job = *j }() // the checks below may change the job's status
		if err := checkContent(ctx, tx, j, p, now, r.JobHash, c.name); err != nil {
			return err
		}
		role, err := checkApprover(ctx, tx, j, p, now, true)
		if err != nil {
			return err
		}
		approvals, err := tx.ListApprovals(ctx, j.ID, j.Revision)
		if err != nil {
			return err
		}
		mine, approvedBefore := findApproval(approvals, p)
		out.Approvals, out.Approval = approvals, mine
		switch {
		case approvedBefore:
			// Only the caller's own repeat is already_approved: another approver's
			// call on a job whose quorum is met is no approval of theirs.
			return repeatApproval(ctx, tx, j, p, now, r.Reason, &out)
		case approvedStatus(j):
			return refuse(ctx, tx, j, p, now, failed(ReasonAlreadyApproved, "the job's approval quorum is already met"))
		case j.Status == store.StatusRejected:
			return refuse(ctx, tx, j, p, now, failed(ReasonAlreadyRejected, "the job was rejected"))
		case j.Status != store.StatusPendingApproval:
			return notPending(j.Status)
		}
		if err := checkExpiry(ctx, tx, j, p, now); err != nil {
			return err
		}
		if err := checkDrift(ctx, tx, j, p, now); err != nil {
			return err
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
		if err := tx.UpdateJob(ctx, *j); err != nil {
			return err
		}
		out.Approvals, out.Approval = approvals, a
		e := jobEvent(evidence.KindApproval, j, p, now)
		e.ApprovedBy, e.ApprovedRole, e.ApprovedAt, e.Reason = p.ID, role, now, r.Reason
		return appendEvent(ctx, tx, &e)
	})
	if err != nil {
		return ApproveResult{}, err
	}
	return out, nil
}

// repeatApproval answers an Approve by a caller who approved the job's current revision
// before, and records the repeat, which the evidence counts as already_approved.
func repeatApproval(ctx context.Context, tx store.Tx, j *store.Job, p Principal, now int64, reason string, out *ApproveResult) error {
	out.AlreadyApproved = true
	e := jobEvent(evidence.KindApproval, j, p, now)
	e.Repeat, e.Reason = true, reason
	a := out.Approval
	e.ApprovedBy, e.ApprovedRole, e.ApprovedAt = a.Approver, a.Role, a.At
	return appendEvent(ctx, tx, &e)
}

// findApproval returns p's approval among as, comparing canonical identities.
func findApproval(as []store.Approval, p Principal) (store.Approval, bool) {
	for _, a := range as {
		if sameIdentity(p, a.Approver) {
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
// It reads authorize → content hash → role (separation of duties is not checked: a veto
// is always safe) → state → ttl → drift → write. Reject after a completed approval is
// ALREADY_APPROVED: Cancel withdraws an approved job.
func (s *Service) Reject(ctx context.Context, p Principal, r RejectRequest) (RejectResult, error) {
	if err := firstErr(checkPrincipal(p), checkJobID("job_id", r.JobID), checkHash(r.JobHash),
		checkReason("reason", r.Reason, true)); err != nil {
		return RejectResult{}, err
	}
	var out RejectResult
	c := call{name: "Reject", jobID: r.JobID, presented: r.JobHash}
	err := s.onJob(ctx, p, c, mayDecideOn, func(ctx context.Context, tx store.Tx, j *store.Job, now int64) error {
		out = RejectResult{}
		defer func() { out.Job = *j }()
		if err := checkContent(ctx, tx, j, p, now, r.JobHash, c.name); err != nil {
			return err
		}
		role, err := checkApprover(ctx, tx, j, p, now, false)
		if err != nil {
			return err
		}
		switch {
		case j.Status == store.StatusRejected:
			return repeatRejection(ctx, tx, j, p, now, r.Reason, &out)
		case approvedStatus(j):
			return refuse(ctx, tx, j, p, now, failed(ReasonAlreadyApproved,
				"the job is already approved; Cancel withdraws it before Publish"))
		case j.Status != store.StatusPendingApproval:
			return notPending(j.Status)
		}
		if err := checkExpiry(ctx, tx, j, p, now); err != nil {
			return err
		}
		if err := checkDrift(ctx, tx, j, p, now); err != nil {
			return err
		}
		j.Status, j.UpdatedAt = store.StatusRejected, now
		if err := tx.UpdateJob(ctx, *j); err != nil {
			return err
		}
		out.RejectedBy, out.RejectedRole, out.RejectedAt = p.ID, role, now
		e := jobEvent(evidence.KindRejection, j, p, now)
		e.Reason = r.Reason
		return appendEvent(ctx, tx, &e)
	})
	if err != nil {
		return RejectResult{}, err
	}
	return out, nil
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
