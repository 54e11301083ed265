package jobs

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/identity"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
)

// The checks the transitions share. A check that refuses a call returns an error:
// a plain *Error when it wrote nothing, or refuseAfterCommit when what it wrote — the
// refusal's evidence, an expiry, a move to conflict — must outlast the refusal.

// refusedAfterCommit is the verdict "commit this transaction, then refuse the call with
// answer": returned from a transaction's body, write commits and answers the caller with
// answer. It is how a refusal's evidence survives the refusal.
type refusedAfterCommit struct{ answer *Error }

func (r *refusedAfterCommit) Error() string { return r.answer.Msg }

// refuseAfterCommit returns the verdict that commits the transaction, then refuses with e.
func refuseAfterCommit(e *Error) error { return &refusedAfterCommit{answer: e} }

// asRefusal returns the answer of a refusedAfterCommit verdict.
func asRefusal(err error) (*Error, bool) {
	var r *refusedAfterCommit
	if errors.As(err, &r) {
		return r.answer, true
	}
	return nil, false
}

// checkContent refuses a presented hash that differs from the stored job's: a conflict
// event, and the job is left as it is.
func checkContent(ctx context.Context, tx store.Tx, j *store.Job, p Principal, now int64, presented, call string) error {
	if j.Hash == presented {
		return nil
	}
	e := conflictEvent(j, p, now, ReasonJobHashMismatch, call+" with a job_hash that differs from the stored job's")
	e.PresentedHash = presented
	if err := appendEvent(ctx, tx, &e); err != nil {
		return err
	}
	return refuseAfterCommit(hashMismatch(j.Hash, presented))
}

// checkExpiry moves a job past its deadline to expired, with its evidence.
func checkExpiry(ctx context.Context, tx store.Tx, j *store.Job, p Principal, now int64) error {
	if now < j.ExpiresAt {
		return nil
	}
	if err := expire(ctx, tx, j, p, now); err != nil {
		return err
	}
	return refuseAfterCommit(failed(ReasonApprovalExpired, "the approval ttl passed; the job is expired",
		"expires_at", strconv.FormatInt(j.ExpiresAt, 10)))
}

func expire(ctx context.Context, tx store.Tx, j *store.Job, p Principal, now int64) error {
	j.Status = store.StatusExpired
	j.UpdatedAt = now
	if err := tx.UpdateJob(ctx, *j); err != nil {
		return err
	}
	e := jobEvent(evidence.KindExpiry, j, p, now)
	e.Reason = "the approval ttl passed before the job was approved and published"
	return appendEvent(ctx, tx, &e)
}

// activeSnapshot reads the active-snapshot pointer inside the transaction.
func activeSnapshot(ctx context.Context, tx store.Tx) (string, error) {
	id, err := tx.ActiveSnapshotID(ctx)
	if errors.Is(err, snapshots.ErrNoActive) {
		return "", failed(ReasonNoActiveSnapshot, "no policy snapshot is active")
	}
	return id, err
}

// checkDrift is the strict snapshot check of approvals: a job decided under a snapshot
// that is no longer active moves to conflict.
func checkDrift(ctx context.Context, tx store.Tx, j *store.Job, p Principal, now int64) error {
	active, err := activeSnapshot(ctx, tx)
	if err != nil || active == j.Snapshot {
		return err
	}
	decided := j.Snapshot
	why := fmt.Sprintf("decided under %s, but %s is active; Decide again to re-decide", decided, active)
	if err := toConflict(ctx, tx, j, p, now, active, why); err != nil {
		return err
	}
	return refuseAfterCommit(drift(decided, active))
}

// toConflict moves j to conflict because of drift. The event names the active snapshot
// as policy_snapshot and the deciding one as previous_snapshot.
func toConflict(ctx context.Context, tx store.Tx, j *store.Job, p Principal, now int64, active, why string) error {
	j.Status = store.StatusConflict
	j.UpdatedAt = now
	if err := tx.UpdateJob(ctx, *j); err != nil {
		return err
	}
	e := conflictEvent(j, p, now, ReasonSnapshotDrift, why)
	e.PolicySnapshot, e.PreviousSnapshot = active, j.Snapshot
	return appendEvent(ctx, tx, &e)
}

func drift(decided, active string) *Error {
	return aborted(ReasonSnapshotDrift, "the job was decided under a policy snapshot that is no longer active",
		"expected_snapshot", decided, "active_snapshot", active)
}

// checkApprover refuses a caller with standing on j who may not approve it: one that
// holds none of the roles it may be approved under (ROLE_NOT_ALLOWED), or, when sod, its
// actor or submitter (SELF_APPROVAL). It returns the role the caller approves under.
func checkApprover(ctx context.Context, tx store.Tx, j *store.Job, p Principal, now int64, sod bool) (string, error) {
	if sod && selfApproval(p, j) {
		return "", refuse(ctx, tx, j, p, now, denied(ReasonSelfApproval,
			"the approver must differ from the job's actor and submitter"))
	}
	role := eligibleRole(p, j)
	if role == "" {
		return "", refuse(ctx, tx, j, p, now, denied(ReasonRoleNotAllowed,
			"the caller holds none of the roles that may approve this job"))
	}
	return role, nil
}

// refuse records a refused attempt of a caller with standing on j, and refuses with e
// once that evidence has committed.
func refuse(ctx context.Context, tx store.Tx, j *store.Job, p Principal, now int64, e *Error) error {
	ev := refusalEvent(j, p, now, e.Reason, e.Msg)
	if err := appendEvent(ctx, tx, &ev); err != nil {
		return err
	}
	return refuseAfterCommit(e)
}

// sameIdentity reports whether an approval's approver is p, in canonical form, so that
// two spellings of one person count once toward a quorum.
func sameIdentity(p Principal, approver string) bool {
	return approver == p.ID || identity.Confusable(approver, p.ID)
}

// approvedStatus reports whether j went through a completed approval.
func approvedStatus(j *store.Job) bool {
	switch j.Status {
	case store.StatusApproved, store.StatusApprovedAndPublished:
		return true
	case store.StatusSucceeded, store.StatusFailed:
		return j.ApprovalRequired && j.ApprovedBy != ""
	}
	return false
}

// published reports whether j has been handed to a worker.
func published(s store.Status) bool {
	switch s {
	case store.StatusAllowedAndPublished, store.StatusApprovedAndPublished, store.StatusSucceeded, store.StatusFailed:
		return true
	}
	return false
}
