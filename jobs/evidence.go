package jobs

import (
	"context"
	"fmt"

	"github.com/oklog/ulid/v2"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// jobEvent returns an event of kind k about j, in j's state after the change, caused by
// p at time at. The job's approval summary rides along, so a publish event of an
// approved job names its approver.
func jobEvent(k evidence.Kind, j *store.Job, p Principal, at int64) evidence.Event {
	return evidence.Event{
		JobID:            j.ID,
		TraceID:          j.TraceID,
		Kind:             k,
		At:               at,
		Actor:            j.Actor,
		Principal:        p.ID,
		AuthMethod:       p.Auth,
		Decision:         j.Decision,
		ApprovalRequired: j.ApprovalRequired,
		RuleID:           j.RuleID,
		MatchedRules:     j.MatchedRules,
		PolicySnapshot:   j.Snapshot,
		JobHash:          j.Hash,
		ApprovedBy:       j.ApprovedBy,
		ApprovedRole:     j.ApprovedRole,
		ApprovedAt:       j.ApprovedAt,
		Status:           string(j.Status),
		Attempt:          j.Attempt,
	}
}

// conflictEvent records a refused change of kind conflict (code SNAPSHOT_DRIFT,
// JOB_HASH_MISMATCH or LOCK_BUSY).
func conflictEvent(j *store.Job, p Principal, at int64, code, reason string) evidence.Event {
	e := jobEvent(evidence.KindConflict, j, p, at)
	e.Conflict = code
	e.Reason = reason
	return e
}

// refusalEvent records an attempt refused for the caller's identity or the job's state.
func refusalEvent(j *store.Job, p Principal, at int64, code, reason string) evidence.Event {
	e := jobEvent(evidence.KindRefusal, j, p, at)
	e.Conflict = code
	e.Reason = reason
	return e
}

// appendEvent links e to its chain, validates and seals it, and stores it, with the
// notification it announces (see notifyKind) in the same transaction: every transition
// passes here, so none is announced unless it commits, and none that commits is missed.
// An incomplete event fails the transaction it belongs to (fail closed).
func appendEvent(ctx context.Context, tx store.Tx, e *evidence.Event) error {
	seq, prev, err := tx.ChainHead(ctx, e.JobID)
	if err != nil {
		return err
	}
	if err := seal(e, seq, prev); err != nil {
		return err
	}
	if err := tx.AppendEvent(ctx, *e); err != nil {
		return err
	}
	return notify(ctx, tx, e)
}

// seal gives e its id and seals it after the chain head (seq, prev).
func seal(e *evidence.Event, seq int64, prev string) error {
	e.EventID = ulid.Make().String()
	if err := e.Seal(seq, prev); err != nil {
		return fmt.Errorf("jobs: refusing to write incomplete evidence: %w", err)
	}
	return nil
}
