package audit

import (
	"context"
	"errors"
	"strings"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/identity"
	"github.com/agate-pdp/agate/store"
)

// JobEvidence is one chain's evidence: for a job, its summary record and the stored job
// behind it; for every chain, its events in chain order.
type JobEvidence struct {
	Summary   evidence.Summary
	Job       store.Job        // zero for the policy chain, or when the job row is missing
	Approvals []store.Approval // of the job's current revision, oldest first
	Conflict  string           // the latest conflict reason while the job is in conflict
	Events    []evidence.Event // seq ascending
}

// GetEvidence returns a job's evidence, the policy chain's (evidence.PolicyChain) or a
// principal's chain of refused calls without standing (evidence.PrincipalChain).
// NotFound when neither a job nor any event has that id.
func (s *Service) GetEvidence(ctx context.Context, jobID string) (JobEvidence, error) {
	if err := checkChainID(jobID); err != nil {
		return JobEvidence{}, err
	}
	var out JobEvidence
	found := false
	err := s.read(ctx, func(ctx context.Context, tx store.Tx) error {
		out, found = JobEvidence{}, false
		events, err := tx.ListEvents(ctx, jobID)
		if err != nil {
			return err
		}
		out.Events, found = events, len(events) > 0
		if !evidence.IsJobChain(jobID) {
			return nil
		}
		j, err := tx.GetJob(ctx, jobID, false)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		out.Job, out.Summary = j, summaryOf(j)
		if out.Approvals, err = tx.ListApprovals(ctx, j.ID, j.Revision); err != nil {
			return err
		}
		if j.Status == store.StatusConflict {
			out.Conflict = lastConflict(events)
		}
		return nil
	})
	if err != nil {
		return JobEvidence{}, err
	}
	if !found {
		return JobEvidence{}, notFound("job", jobID)
	}
	return out, nil
}

// summaryOf builds a job's summary record from its stored state.
func summaryOf(j store.Job) evidence.Summary {
	return evidence.Summary{
		JobID: j.ID, TraceID: j.TraceID, Decision: j.Decision, ApprovalRequired: j.ApprovalRequired,
		PolicySnapshot: j.Snapshot, JobHash: j.Hash, ApprovedBy: j.ApprovedBy,
		ApprovedRole: j.ApprovedRole, ApprovedAt: j.ApprovedAt, Status: string(j.Status),
		Topic: j.Topic, Actor: j.Actor, Attempt: j.Attempt,
	}
}

func lastConflict(events []evidence.Event) string {
	for i := len(events) - 1; i >= 0; i-- {
		if events[i].Kind == evidence.KindConflict {
			return events[i].Conflict
		}
	}
	return ""
}

// checkChainID accepts a job id (1–128 of [A-Za-z0-9._:-]), the policy chain's id or a
// principal's chain id ("@principal:" and a canonical principal id).
func checkChainID(id string) error {
	if id == evidence.PolicyChain {
		return nil
	}
	if key, ok := strings.CutPrefix(id, evidence.PrincipalChainPrefix); ok {
		if k, err := identity.Key(key); err != nil || k != key {
			return invalid("job_id", "%q is not a principal chain: want @principal: and a canonical principal id", id)
		}
		return nil
	}
	if id == "" || len(id) > 128 {
		return invalid("job_id", "must be 1 to 128 characters")
	}
	for _, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == ':' || r == '-'
		if !ok {
			return invalid("job_id", "may hold only letters, digits and . _ : -")
		}
	}
	return nil
}
