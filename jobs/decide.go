package jobs

import (
	"context"
	"errors"

	"github.com/oklog/ulid/v2"

	"github.com/agate-pdp/agate/canonical"
	"github.com/agate-pdp/agate/decision"
	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
)

// DecideRequest is a job to decide (or, for Evaluate, to try).
type DecideRequest struct {
	JobID   string
	Topic   string
	Actor   string
	Labels  map[string]any // scalars only: string, bool, number
	Payload []byte         // a JSON object; empty means {}
	TraceID string         // empty: one is generated
}

// DecideResult is the stored job after Decide.
type DecideResult struct {
	Job            store.Job
	AlreadyDecided bool // the job_id was decided before with the same content; nothing was written
}

// Decide evaluates a job under the replica's active snapshot and stores it as allowed,
// denied or pending_approval with its decision evidence, in one transaction. A known
// job_id with the same content returns the stored job (AlreadyDecided), unless the job
// is in conflict: then it is re-decided as revision + 1 and earlier approvals no longer
// count. A known job_id with different content is Aborted JOB_HASH_MISMATCH, recorded,
// and changes nothing.
func (s *Service) Decide(ctx context.Context, p Principal, r DecideRequest) (DecideResult, error) {
	if err := checkPrincipal(p); err != nil {
		return DecideResult{}, err
	}
	ev, err := s.evaluate(&r)
	if err != nil {
		return DecideResult{}, err
	}
	labels, err := canonical.Append(nil, labelsOrEmpty(r.Labels))
	if err != nil {
		return DecideResult{}, contentError(err)
	}
	payload := r.Payload
	if len(payload) == 0 {
		payload = []byte("{}")
	}
	var out DecideResult
	var post error
	err = s.write(ctx, p, r.JobID, func(ctx context.Context, tx store.Tx, now int64) error {
		out, post = DecideResult{}, nil
		cur, err := tx.GetJob(ctx, r.JobID, true)
		if errors.Is(err, store.ErrNotFound) {
			j := store.Job{
				ID: r.JobID, Topic: r.Topic, Actor: r.Actor, Labels: labels, Payload: payload,
				Hash: ev.hash, SubmittedBy: p.ID, TraceID: r.TraceID, Revision: 1,
			}
			if j.TraceID == "" {
				j.TraceID = "trc_" + ulid.Make().String()
			}
			decided(&j, &ev.result, ev.snapshot, now)
			if err := tx.InsertJob(ctx, j); err != nil {
				return err // ErrConflict: a concurrent Decide inserted it; write runs us again
			}
			out.Job = j
			return appendDecision(ctx, tx, &j, p, now)
		}
		if err != nil {
			return err
		}
		out.Job = cur
		if cur.Hash != ev.hash {
			e := conflictEvent(&cur, p, now, ReasonJobHashMismatch, "Decide of a known job_id with different content")
			e.PresentedHash = ev.hash
			post = hashMismatch(cur.Hash, ev.hash)
			return appendEvent(ctx, tx, &e)
		}
		if cur.Status != store.StatusConflict {
			out.AlreadyDecided = true
			return nil
		}
		j := cur
		decided(&j, &ev.result, ev.snapshot, now)
		j.Revision = cur.Revision + 1
		if r.TraceID != "" {
			j.TraceID = r.TraceID
		}
		if err := tx.UpdateJob(ctx, j); err != nil {
			return err
		}
		out.Job = j
		return appendDecision(ctx, tx, &j, p, now)
	})
	if err != nil {
		return DecideResult{}, err
	}
	return out, post
}

// decided sets j's decision state from an evaluation result, as a fresh decision.
func decided(j *store.Job, res *decision.Result, snapshot string, now int64) {
	j.Decision = res.Decision.String()
	j.ApprovalRequired = res.Decision == decision.RequireHuman
	j.RuleID = res.RuleID
	j.Reason = res.Reason
	j.MatchedRules = res.Matched
	j.Snapshot = snapshot
	j.ApprovalRoles, j.Quorum, j.ExpiresAt = nil, 0, 0
	switch res.Decision {
	case decision.Allow:
		j.Status = store.StatusAllowed
	case decision.Deny:
		j.Status = store.StatusDenied
	case decision.RequireHuman:
		j.Status = store.StatusPendingApproval
		j.ApprovalRoles = res.Approval.Roles
		j.Quorum = res.Approval.Quorum
		j.ExpiresAt = now + res.Approval.TTL.Microseconds()
	}
	j.ApprovedBy, j.ApprovedRole, j.ApprovedAt = "", "", 0
	j.Attempt, j.Outcome, j.PublishedAt = 0, "", 0
	j.DecidedAt, j.UpdatedAt = now, now
}

func appendDecision(ctx context.Context, tx store.Tx, j *store.Job, p Principal, now int64) error {
	e := jobEvent(evidence.KindDecision, j, p, now)
	e.Reason = j.Reason
	return appendEvent(ctx, tx, &e)
}

func labelsOrEmpty(l map[string]any) map[string]any {
	if l == nil {
		return map[string]any{}
	}
	return l
}

// evaluation is a checked, hashed and evaluated job.
type evaluation struct {
	hash     string
	snapshot string
	result   decision.Result
}

// evaluate checks r, hashes it and evaluates it under the tracker's active snapshot.
func (s *Service) evaluate(r *DecideRequest) (evaluation, error) {
	if err := checkDecide(r); err != nil {
		return evaluation{}, err
	}
	h, err := hashJob(r)
	if err != nil {
		return evaluation{}, err
	}
	act, ok := s.tracker.Current()
	if !ok {
		return evaluation{}, failed(ReasonNoActiveSnapshot, "no policy snapshot is active; load one with PutPolicy")
	}
	return evaluateWith(r, h, act.Snapshot.ID, act.Engine)
}

func evaluateWith(r *DecideRequest, hash, snapshot string, e *decision.Engine) (evaluation, error) {
	res, err := e.Evaluate(&decision.Job{Topic: r.Topic, Actor: r.Actor, Labels: r.Labels})
	if err != nil {
		return evaluation{}, labelError(err)
	}
	return evaluation{hash: hash, snapshot: snapshot, result: res}, nil
}

// EvaluateResult is what Decide would decide, and under which snapshot.
type EvaluateResult struct {
	Result   decision.Result
	Snapshot string
	JobHash  string
}

// Evaluate answers what Decide would decide for r under the active snapshot (snapshotID
// empty) or the named one. It writes nothing.
func (s *Service) Evaluate(ctx context.Context, r DecideRequest, snapshotID string) (EvaluateResult, error) {
	ev, err := s.evaluateIn(ctx, &r, snapshotID)
	if err != nil {
		return EvaluateResult{}, err
	}
	return EvaluateResult{Result: ev.result, Snapshot: ev.snapshot, JobHash: ev.hash}, nil
}

func (s *Service) evaluateIn(ctx context.Context, r *DecideRequest, snapshotID string) (evaluation, error) {
	if snapshotID == "" {
		return s.evaluate(r)
	}
	if err := checkDecide(r); err != nil {
		return evaluation{}, err
	}
	h, err := hashJob(r)
	if err != nil {
		return evaluation{}, err
	}
	eng, err := s.engine(ctx, snapshotID)
	if err != nil {
		return evaluation{}, err
	}
	return evaluateWith(r, h, snapshotID, eng)
}

// engine returns the compiled form of a stored snapshot, from the cache when it can.
func (s *Service) engine(ctx context.Context, id string) (*decision.Engine, error) {
	var snap snapshots.Snapshot
	err := s.read(ctx, "snapshot", id, func(ctx context.Context, tx store.Tx) error {
		var err error
		snap, err = tx.GetSnapshot(ctx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.cache.Engine(snap)
}

func hashMismatch(stored, presented string) *Error {
	return aborted(ReasonJobHashMismatch, "the job's content differs from the stored job's (job_hash mismatch)",
		"expected_hash", stored, "actual_hash", presented)
}
