package jobs

import (
	"context"
	"fmt"

	"github.com/agate-pdp/agate/decision"
	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// PublishRequest asks to hand a job to a worker.
type PublishRequest struct {
	JobID   string
	JobHash string // hash of the content the dispatcher is about to run
}

// PublishResult is the stored job: exactly what was decided and approved.
type PublishResult struct {
	Job              store.Job
	Approvals        []store.Approval // the job's current revision's, as the same transaction saw them
	AlreadyPublished bool             // published before; the same attempt is returned and nothing changed
}

// Publish marks an approved or allowed job published, exactly once (attempt 1). An
// approved job must be within its ttl, decided under the active snapshot (strict) and
// still have its quorum; an allowed job decided under another snapshot is re-evaluated
// under the active one and published only if still allowed. A hash mismatch is recorded
// and leaves the job as it was: a dispatcher cannot cancel an approval.
func (s *Service) Publish(ctx context.Context, p Principal, r PublishRequest) (PublishResult, error) {
	if err := firstErr(checkPrincipal(p), checkJobID("job_id", r.JobID), checkHash(r.JobHash)); err != nil {
		return PublishResult{}, err
	}
	var out PublishResult
	var post error
	err := s.write(ctx, p, r.JobID, func(ctx context.Context, tx store.Tx, now int64) (err error) {
		out, post = PublishResult{}, nil
		j, err := lockJob(ctx, tx, r.JobID)
		if err != nil {
			return err
		}
		defer func() { out.Job = j }()
		if post, err = checkContent(ctx, tx, &j, p, now, r.JobHash, "Publish"); post != nil || err != nil {
			return err
		}
		if post, err = checkStored(ctx, tx, &j, p, now, "Publish"); post != nil || err != nil {
			return err
		}
		var reevaluated string
		switch j.Status {
		case store.StatusAllowedAndPublished, store.StatusApprovedAndPublished, store.StatusSucceeded, store.StatusFailed:
			out.AlreadyPublished = true
			if j.ApprovalRequired {
				out.Approvals, err = tx.ListApprovals(ctx, j.ID, j.Revision)
			}
			return err
		case store.StatusApproved:
			if out.Approvals, post, err = s.checkApproved(ctx, tx, &j, p, now); post != nil || err != nil {
				return err
			}
			j.Status = store.StatusApprovedAndPublished
		case store.StatusAllowed:
			if reevaluated, post, err = s.checkAllowed(ctx, tx, &j, p, now); post != nil || err != nil {
				return err
			}
			j.Status = store.StatusAllowedAndPublished
		case store.StatusPendingApproval:
			post = failed(ReasonQuorumNotMet, "the job still waits for approval")
			return nil
		case store.StatusRejected:
			post = failed(ReasonAlreadyRejected, "the job was rejected")
			return nil
		default:
			post = notPending(j.Status)
			return nil
		}
		j.Attempt, j.PublishedAt, j.UpdatedAt = 1, now, now
		if err := tx.UpdateJob(ctx, j); err != nil {
			return err
		}
		e := jobEvent(evidence.KindPublish, &j, p, now)
		if reevaluated != "" {
			e.PolicySnapshot, e.PreviousSnapshot = reevaluated, j.Snapshot
		}
		return appendEvent(ctx, tx, &e)
	})
	if err != nil {
		return PublishResult{}, err
	}
	return out, post
}

// checkApproved holds an approved job to its ttl, the active snapshot and its quorum,
// and returns the approvals it counted.
func (s *Service) checkApproved(ctx context.Context, tx store.Tx, j *store.Job, p Principal, now int64) (approvals []store.Approval, post, err error) {
	if post, err = checkExpiry(ctx, tx, j, p, now); post != nil || err != nil {
		return nil, post, err
	}
	if post, err = checkDrift(ctx, tx, j, p, now); post != nil || err != nil {
		return nil, post, err
	}
	approvals, err = tx.ListApprovals(ctx, j.ID, j.Revision)
	if err != nil {
		return nil, nil, err
	}
	if len(approvals) < j.Quorum {
		return approvals, failed(ReasonQuorumNotMet, fmt.Sprintf("the job has %d of %d approvals", len(approvals), j.Quorum)), nil
	}
	return approvals, nil, nil
}

// checkAllowed re-evaluates an allowed job decided under a snapshot that is no longer
// active. It returns the active snapshot's id when the job is still allowed under it;
// otherwise the job moves to conflict and post is SNAPSHOT_DRIFT.
func (s *Service) checkAllowed(ctx context.Context, tx store.Tx, j *store.Job, p Principal, now int64) (reevaluated string, post, err error) {
	active, err := activeSnapshot(ctx, tx)
	if err != nil || active == j.Snapshot {
		return "", nil, err
	}
	snap, err := tx.GetSnapshot(ctx, active)
	if err != nil {
		return "", nil, err
	}
	eng, err := s.cache.Engine(snap)
	if err != nil {
		return "", nil, err
	}
	labels, err := decodeLabels(j.Labels)
	if err != nil {
		return "", nil, err
	}
	res, err := eng.Evaluate(&decision.Job{Topic: j.Topic, Actor: j.Actor, Labels: labels})
	if err == nil && res.Decision == decision.Allow {
		return active, nil, nil
	}
	why := fmt.Sprintf("allowed under %s, but %s is active and ", j.Snapshot, active)
	if err != nil {
		why += "its labels break the active policy's schema: " + err.Error()
	} else {
		why += fmt.Sprintf("decides %s (rule %s)", res.Decision, res.RuleID)
	}
	return "", drift(j.Snapshot, active), toConflict(ctx, tx, j, p, now, active, why)
}

// OutcomeRequest reports how a published attempt ended.
type OutcomeRequest struct {
	JobID     string
	Attempt   int64
	Succeeded bool
	Detail    string // at most 512 bytes, kept in the evidence
}

// OutcomeResult is the job after ReportOutcome.
type OutcomeResult struct {
	Job             store.Job
	AlreadyReported bool
}

// ReportOutcome records the worker's outcome of the job's current attempt; the job
// becomes succeeded or failed. The same outcome for the same attempt again is
// AlreadyReported; another outcome for that attempt is OUTCOME_MISMATCH, another
// attempt ATTEMPT_MISMATCH.
func (s *Service) ReportOutcome(ctx context.Context, p Principal, r OutcomeRequest) (OutcomeResult, error) {
	if err := firstErr(checkPrincipal(p), checkJobID("job_id", r.JobID), checkReason("detail", r.Detail, false)); err != nil {
		return OutcomeResult{}, err
	}
	if r.Attempt < 1 {
		return OutcomeResult{}, invalid("attempt", "must be at least 1")
	}
	outcome := store.StatusFailed
	if r.Succeeded {
		outcome = store.StatusSucceeded
	}
	var out OutcomeResult
	var post error
	err := s.write(ctx, p, r.JobID, func(ctx context.Context, tx store.Tx, now int64) (err error) {
		out, post = OutcomeResult{}, nil
		j, err := lockJob(ctx, tx, r.JobID)
		if err != nil {
			return err
		}
		out.Job = j
		switch j.Status {
		case store.StatusAllowedAndPublished, store.StatusApprovedAndPublished:
			if j.Attempt != r.Attempt {
				post = staleAttempt(j.Attempt, r.Attempt)
				return nil
			}
		case store.StatusSucceeded, store.StatusFailed:
			switch {
			case j.Attempt != r.Attempt:
				post = staleAttempt(j.Attempt, r.Attempt)
			case j.Status == outcome:
				out.AlreadyReported = true
			default:
				post = failed(ReasonOutcomeMismatch, fmt.Sprintf("attempt %d already ended %s", j.Attempt, j.Status),
					"attempt", fmt.Sprint(j.Attempt), "outcome", string(j.Status))
			}
			return nil
		default:
			post = notPending(j.Status)
			return nil
		}
		j.Status, j.Outcome, j.UpdatedAt = outcome, string(outcome), now
		if err := tx.UpdateJob(ctx, j); err != nil {
			return err
		}
		out.Job = j
		e := jobEvent(evidence.KindOutcome, &j, p, now)
		e.Reason = r.Detail
		return appendEvent(ctx, tx, &e)
	})
	if err != nil {
		return OutcomeResult{}, err
	}
	return out, post
}

func staleAttempt(current, presented int64) *Error {
	return failed(ReasonStaleAttempt, fmt.Sprintf("attempt %d is not the job's current attempt %d", presented, current),
		"attempt", fmt.Sprint(current))
}
