package jobs

import (
	"context"
	"fmt"
	"strconv"

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
	c := call{name: "Publish", jobID: r.JobID, presented: r.JobHash}
	err := s.onJob(ctx, p, c, mayDispatch, func(ctx context.Context, tx store.Tx, j *store.Job, now int64) (err error) {
		out = PublishResult{}
		defer func() { out.Job = *j }()
		if err := checkContent(ctx, tx, j, p, now, r.JobHash, c.name); err != nil {
			return err
		}
		events, err := s.checkStored(ctx, tx, j, p, now, c.name)
		if err != nil {
			return err
		}
		var reevaluated string
		switch j.Status {
		case store.StatusAllowedAndPublished, store.StatusApprovedAndPublished, store.StatusSucceeded, store.StatusFailed:
			if err := checkRepeat(ctx, tx, j, p, events, now, true); err != nil {
				return err
			}
			out.AlreadyPublished = true
			if j.ApprovalRequired {
				out.Approvals, err = tx.ListApprovals(ctx, j.ID, j.Revision)
			}
			return err
		case store.StatusApproved:
			if out.Approvals, err = s.checkApproved(ctx, tx, j, p, now); err != nil {
				return err
			}
			j.Status = store.StatusApprovedAndPublished
		case store.StatusAllowed:
			if reevaluated, err = s.checkAllowed(ctx, tx, j, p, now); err != nil {
				return err
			}
			j.Status = store.StatusAllowedAndPublished
		case store.StatusPendingApproval:
			return failed(ReasonQuorumNotMet, "the job still waits for approval")
		case store.StatusRejected:
			return failed(ReasonAlreadyRejected, "the job was rejected")
		default:
			return notPending(j.Status)
		}
		j.Attempt, j.PublishedAt, j.UpdatedAt = 1, now, now
		if err := tx.UpdateJob(ctx, *j); err != nil {
			return err
		}
		e := jobEvent(evidence.KindPublish, j, p, now)
		if reevaluated != "" {
			e.PolicySnapshot, e.PreviousSnapshot = reevaluated, j.Snapshot
		}
		return appendEvent(ctx, tx, &e)
	})
	if err != nil {
		return PublishResult{}, err
	}
	return out, nil
}

// checkApproved holds an approved job to its ttl, the active snapshot and its quorum,
// and returns the approvals it counted.
func (s *Service) checkApproved(ctx context.Context, tx store.Tx, j *store.Job, p Principal, now int64) ([]store.Approval, error) {
	if err := checkExpiry(ctx, tx, j, p, now); err != nil {
		return nil, err
	}
	if err := checkDrift(ctx, tx, j, p, now); err != nil {
		return nil, err
	}
	approvals, err := tx.ListApprovals(ctx, j.ID, j.Revision)
	if err != nil {
		return nil, err
	}
	if len(approvals) < j.Quorum {
		return approvals, failed(ReasonQuorumNotMet, fmt.Sprintf("the job has %d of %d approvals", len(approvals), j.Quorum))
	}
	return approvals, nil
}

// checkAllowed re-evaluates an allowed job decided under a snapshot that is no longer
// active. It returns the active snapshot's id when the job is still allowed under it;
// otherwise the job moves to conflict and the call is refused with SNAPSHOT_DRIFT.
func (s *Service) checkAllowed(ctx context.Context, tx store.Tx, j *store.Job, p Principal, now int64) (reevaluated string, err error) {
	active, err := activeSnapshot(ctx, tx)
	if err != nil || active == j.Snapshot {
		return "", err
	}
	snap, err := tx.GetSnapshot(ctx, active)
	if err != nil {
		return "", err
	}
	eng, err := s.cache.Engine(snap)
	if err != nil {
		return "", err
	}
	labels, err := decodeLabels(j.Labels)
	if err != nil {
		return "", err
	}
	res, err := eng.Evaluate(&decision.Job{Topic: j.Topic, Actor: j.Actor, Labels: labels})
	if err == nil && res.Decision == decision.Allow {
		return active, nil
	}
	decided := j.Snapshot
	why := fmt.Sprintf("allowed under %s, but %s is active and ", decided, active)
	if err != nil {
		why += "its labels break the active policy's schema: " + err.Error()
	} else {
		why += fmt.Sprintf("decides %s (rule %s)", res.Decision, res.RuleID)
	}
	if err := toConflict(ctx, tx, j, p, now, active, why); err != nil {
		return "", err
	}
	return "", refuseAfterCommit(drift(decided, active))
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
	c := call{name: "ReportOutcome", jobID: r.JobID}
	err := s.onJob(ctx, p, c, mayDispatch, func(ctx context.Context, tx store.Tx, j *store.Job, now int64) error {
		out = OutcomeResult{Job: *j}
		switch j.Status {
		case store.StatusAllowedAndPublished, store.StatusApprovedAndPublished:
			if j.Attempt != r.Attempt {
				return staleAttempt(j.Attempt, r.Attempt)
			}
		case store.StatusSucceeded, store.StatusFailed:
			switch {
			case j.Attempt != r.Attempt:
				return staleAttempt(j.Attempt, r.Attempt)
			case j.Status != outcome:
				return failed(ReasonOutcomeMismatch, fmt.Sprintf("attempt %d already ended %s", j.Attempt, j.Status),
					"attempt", fmt.Sprint(j.Attempt), "outcome", string(j.Status))
			}
			out.AlreadyReported = true
			return nil
		default:
			return notPending(j.Status)
		}
		j.Status, j.Outcome, j.UpdatedAt = outcome, string(outcome), now
		if err := tx.UpdateJob(ctx, *j); err != nil {
			return err
		}
		out.Job = *j
		e := jobEvent(evidence.KindOutcome, j, p, now)
		e.Reason = r.Detail
		return appendEvent(ctx, tx, &e)
	})
	if err != nil {
		return OutcomeResult{}, err
	}
	return out, nil
}

func staleAttempt(current, presented int64) *Error {
	return failed(ReasonStaleAttempt, fmt.Sprintf("attempt %d is not the job's current attempt %d", presented, current),
		"attempt", fmt.Sprint(current))
}

// checkRepeat answers a Publish (or Replay) of a job already published (replayed) only
// as a retry: from the principal that published it, while what let it through still
// holds (the snapshot it was published under still active and, with ttl, an approval
// within its ttl; Replay does not hold a job to its ttl). Anything else is
// refused — and recorded, as every refusal of a caller with standing is — so a second
// dispatcher, or a retry after the policy moved on, never gets a second go-ahead.
// The job is left as it is: its publication stands in the evidence.
func checkRepeat(ctx context.Context, tx store.Tx, j *store.Job, p Principal, events []evidence.Event, now int64, ttl bool) error {
	var last *evidence.Event
	for i := range events {
		if events[i].Kind == evidence.KindPublish || events[i].Kind == evidence.KindReplay {
			last = &events[i]
		}
	}
	// checkStored has refused a published job without its publish event; a repeat
	// without one is nobody's retry.
	if last == nil || !sameIdentity(p, last.Principal) {
		return failed(ReasonNotPending, fmt.Sprintf("the job is %s: another principal published it", j.Status),
			"status", string(j.Status))
	}
	if ttl && j.ApprovalRequired && now >= j.ExpiresAt {
		return failed(ReasonApprovalExpired, "the approval ttl passed; a published job is not handed out again",
			"expires_at", strconv.FormatInt(j.ExpiresAt, 10))
	}
	active, err := activeSnapshot(ctx, tx)
	if err != nil {
		return err
	}
	under := j.Snapshot
	if last.PolicySnapshot != "" {
		under = last.PolicySnapshot
	}
	if active != under {
		return drift(under, active)
	}
	return nil
}
