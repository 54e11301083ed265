package jobs

import (
	"cmp"
	"context"
	"time"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// ReplayRequest re-publishes a job whose publish or outcome was lost.
type ReplayRequest struct {
	JobID           string
	JobHash         string
	ExpectedAttempt int64  // the attempt this replay supersedes; it runs as ExpectedAttempt + 1
	ReasonCode      string // WORKER_OUTAGE, PUBLISH_LOST, OUTCOME_TIMEOUT or OPERATOR_REQUEST
	Reason          string // required, at most 512 bytes
}

// ReplayResult is the job with its new attempt.
type ReplayResult struct {
	Job             store.Job
	Approvals       []store.Approval // the job's current revision's, oldest first
	AlreadyReplayed bool             // this replay was done before; nothing changed
}

// Replay publishes a published job again, without an outcome, as attempt
// ExpectedAttempt + 1, after re-checking its hash and snapshot (approved: strict drift;
// allowed: re-evaluated). The ttl is not re-checked: the job was published within it. A
// job whose first publish was lost (approved or allowed, attempt 0) may be replayed with
// ExpectedAttempt 0, under the checks of Publish. A retry of a replay that went through
// is AlreadyReplayed, so a job never runs twice for one Replay.
func (s *Service) Replay(ctx context.Context, p Principal, r ReplayRequest) (ReplayResult, error) {
	if err := firstErr(checkPrincipal(p), checkJobID("job_id", r.JobID), checkHash(r.JobHash),
		checkReason("reason", r.Reason, true)); err != nil {
		return ReplayResult{}, err
	}
	if r.ExpectedAttempt < 0 {
		return ReplayResult{}, invalid("expected_attempt", "must not be negative")
	}
	if !validReplayCode(r.ReasonCode) {
		return ReplayResult{}, invalid("reason_code", "must be one of %s, %s, %s, %s",
			ReplayWorkerOutage, ReplayPublishLost, ReplayOutcomeTimeout, ReplayOperatorRequest)
	}
	var out ReplayResult
	c := call{name: "Replay", jobID: r.JobID, presented: r.JobHash}
	err := s.onJob(ctx, p, c, mayDispatch, func(ctx context.Context, tx store.Tx, j *store.Job, now int64) (err error) {
		out = ReplayResult{}
		defer func() { out.Job = *j }()
		if err := checkContent(ctx, tx, j, p, now, r.JobHash, c.name); err != nil {
			return err
		}
		events, err := s.checkStored(ctx, tx, j, p, now, c.name)
		if err != nil {
			return err
		}
		if published(j.Status) && j.Attempt == r.ExpectedAttempt+1 {
			done, err := replayedTo(ctx, tx, j.ID, j.Attempt)
			if err == nil && done {
				// A repeat is the replayer's retry only, while what let it through holds.
				err = checkRepeat(ctx, tx, j, p, events, now, false)
			}
			if err != nil || done {
				out.AlreadyReplayed = done
				return cmp.Or(err, listApprovals(ctx, tx, j, &out.Approvals))
			}
		}
		switch j.Status {
		case store.StatusAllowedAndPublished, store.StatusApprovedAndPublished:
			if j.Attempt != r.ExpectedAttempt {
				return staleAttempt(j.Attempt, r.ExpectedAttempt)
			}
		case store.StatusApproved, store.StatusAllowed:
			if r.ExpectedAttempt != 0 {
				return staleAttempt(j.Attempt, r.ExpectedAttempt)
			}
		case store.StatusRejected:
			return failed(ReasonAlreadyRejected, "the job was rejected")
		default:
			return notPending(j.Status)
		}
		var reevaluated string
		next := j.Status
		switch j.Status {
		case store.StatusApproved:
			_, err = s.checkApproved(ctx, tx, j, p, now)
			next = store.StatusApprovedAndPublished
		case store.StatusApprovedAndPublished:
			err = checkDrift(ctx, tx, j, p, now)
		case store.StatusAllowed:
			reevaluated, err = s.checkAllowed(ctx, tx, j, p, now)
			next = store.StatusAllowedAndPublished
		default:
			reevaluated, err = s.checkAllowed(ctx, tx, j, p, now)
		}
		if err != nil {
			return err
		}
		j.Status = next
		j.Attempt++
		j.PublishedAt, j.UpdatedAt = now, now
		if err := tx.UpdateJob(ctx, *j); err != nil {
			return err
		}
		e := jobEvent(evidence.KindReplay, j, p, now)
		e.ReplayReasonCode, e.Reason = r.ReasonCode, r.Reason
		if reevaluated != "" {
			e.PolicySnapshot, e.PreviousSnapshot = reevaluated, j.Snapshot
		}
		if err := appendEvent(ctx, tx, &e); err != nil {
			return err
		}
		return listApprovals(ctx, tx, j, &out.Approvals)
	})
	if err != nil {
		return ReplayResult{}, err
	}
	return out, nil
}

// listApprovals sets *out to the approvals of j's current revision, if it needed any.
func listApprovals(ctx context.Context, tx store.Tx, j *store.Job, out *[]store.Approval) error {
	if !j.ApprovalRequired {
		return nil
	}
	as, err := tx.ListApprovals(ctx, j.ID, j.Revision)
	*out = as
	return err
}

// replayedTo reports whether the job's last replay event ran it as attempt.
func replayedTo(ctx context.Context, tx store.Tx, jobID string, attempt int64) (bool, error) {
	events, err := tx.ListEvents(ctx, jobID)
	if err != nil {
		return false, err
	}
	for i := len(events) - 1; i >= 0; i-- {
		if events[i].Kind == evidence.KindReplay {
			return events[i].Attempt == attempt, nil
		}
	}
	return false, nil
}

// ReplayableQuery selects jobs whose publish or outcome may have been lost.
type ReplayableQuery struct {
	OlderThan time.Duration // last changed at least this long ago; 0 means any age
	PageSize  int           // default 50, at most 500
	PageToken string
}

// ListReplayable lists jobs approved or allowed but not published, and published jobs
// without an outcome, last changed (for published jobs: published) longer ago than
// q.OlderThan, oldest decision first. It writes nothing.
func (s *Service) ListReplayable(ctx context.Context, p Principal, q ReplayableQuery) ([]View, string, error) {
	if err := checkPrincipal(p); err != nil {
		return nil, "", err
	}
	if !p.HasRole(RoleDispatch) {
		return nil, "", denied(ReasonRoleNotAllowed, "only the dispatcher lists replayable jobs")
	}
	if q.OlderThan < 0 {
		return nil, "", invalid("older_than", "must not be negative")
	}
	size, err := pageSize(q.PageSize)
	if err != nil {
		return nil, "", err
	}
	jq := store.JobQuery{Statuses: []store.Status{store.StatusApproved, store.StatusAllowed,
		store.StatusApprovedAndPublished, store.StatusAllowedAndPublished}}
	if jq.AfterDecidedAt, jq.AfterID, err = decodeJobCursor(q.PageToken); err != nil {
		return nil, "", err
	}
	cutoff := int64(0)
	if q.OlderThan > 0 {
		cutoff = s.nowMicro() - q.OlderThan.Microseconds()
		jq.UpdatedBefore = cutoff
	}
	keep := func(j *store.Job) bool {
		return cutoff == 0 || !published(j.Status) || j.PublishedAt < cutoff
	}
	var list []store.Job
	var next string
	err = s.read(ctx, "", "", func(ctx context.Context, tx store.Tx) error {
		var err error
		list, next, err = scanJobs(ctx, tx, jq, size, keep)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	views := make([]View, len(list))
	for i := range list {
		views[i] = newView(&list[i], nil)
	}
	return views, next, nil
}
