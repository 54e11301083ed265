package jobs

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
)

// The checks the transitions share. Each that refuses a change and must leave evidence
// writes it and returns the caller's error as post: the transaction commits the
// evidence, then the call fails.

// lockJob returns the job with its row locked, or NotFound.
func lockJob(ctx context.Context, tx store.Tx, id string) (store.Job, error) {
	j, err := tx.GetJob(ctx, id, true)
	if errors.Is(err, store.ErrNotFound) {
		return j, notFound("job", id)
	}
	return j, err
}

// checkContent refuses a presented hash that differs from the stored job's: a conflict
// event, and the job is left as it is.
func checkContent(ctx context.Context, tx store.Tx, j *store.Job, p Principal, now int64, presented, call string) (post, err error) {
	if j.Hash == presented {
		return nil, nil
	}
	e := conflictEvent(j, p, now, ReasonJobHashMismatch, call+" with a job_hash that differs from the stored job's")
	e.PresentedHash = presented
	return hashMismatch(j.Hash, presented), appendEvent(ctx, tx, &e)
}

// checkExpiry moves a job past its deadline to expired, with its evidence.
func checkExpiry(ctx context.Context, tx store.Tx, j *store.Job, p Principal, now int64) (post, err error) {
	if now < j.ExpiresAt {
		return nil, nil
	}
	return failed(ReasonApprovalExpired, "the approval ttl passed; the job is expired",
		"expires_at", strconv.FormatInt(j.ExpiresAt, 10)), expire(ctx, tx, j, p, now)
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
func checkDrift(ctx context.Context, tx store.Tx, j *store.Job, p Principal, now int64) (post, err error) {
	active, err := activeSnapshot(ctx, tx)
	if err != nil || active == j.Snapshot {
		return nil, err
	}
	why := fmt.Sprintf("decided under %s, but %s is active; Decide again to re-decide", j.Snapshot, active)
	return drift(j.Snapshot, active), toConflict(ctx, tx, j, p, now, active, why)
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

// approverRole returns the first of the job's approval roles that p holds, or "".
func approverRole(p Principal, roles []string) string {
	for _, r := range roles {
		if p.HasRole(r) {
			return r
		}
	}
	return ""
}

// checkRole refuses a caller that holds none of the job's approval roles.
func checkRole(ctx context.Context, tx store.Tx, j *store.Job, p Principal, now int64) (role string, post, err error) {
	if role = approverRole(p, j.ApprovalRoles); role != "" {
		return role, nil, nil
	}
	e := refusalEvent(j, p, now, ReasonRoleNotAllowed, "the caller holds none of the roles the rule allows")
	return "", denied(ReasonRoleNotAllowed, "the caller holds none of the roles that may approve this job"),
		appendEvent(ctx, tx, &e)
}

// refuse records a refused attempt and returns err as post.
func refuse(ctx context.Context, tx store.Tx, j *store.Job, p Principal, now int64, e *Error) (post, err error) {
	ev := refusalEvent(j, p, now, e.Reason, e.Msg)
	return e, appendEvent(ctx, tx, &ev)
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
