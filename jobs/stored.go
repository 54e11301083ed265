package jobs

import (
	"context"
	"fmt"
	"slices"

	"github.com/agate-pdp/agate/canonical"
	"github.com/agate-pdp/agate/decision"
	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// checkStored checks the stored job before Publish or Replay hands it out, against
// itself and against its own evidence: its content must hash to its stored job_hash;
// the latest decision event must name that hash and that decision; and a job stored as
// approved that the event says needs a human must have, after it, the approval that
// completed its quorum, for the same hash. A row rewritten behind Agate's back — a swapped payload with a
// matching hash, a status set to approved, a decision turned into allow — fails one of
// these. Then nothing is handed out, the job is left as it is, and a conflict event
// records both hashes.
//
// It returns the job's events it read, for the caller's further checks.
func (s *Service) checkStored(ctx context.Context, tx store.Tx, j *store.Job, p Principal, now int64, call string) ([]evidence.Event, error) {
	computed := "(content cannot be hashed)"
	if labels, err := decodeLabels(j.Labels); err == nil {
		if h, err := canonical.JobHash(j.Topic, j.Actor, labels, j.Payload); err == nil {
			computed = h
		}
	}
	events, err := tx.ListEvents(ctx, j.ID)
	if err != nil {
		return nil, err
	}
	decided, why := chainVerdict(events, j)
	if computed == j.Hash && why == "" {
		if why, err = s.ruleVerdict(ctx, tx, events, j); err != nil {
			return nil, err
		}
		if why == "" {
			return events, nil
		}
	}
	if why == "" {
		why = fmt.Sprintf("the stored job's content hashes to %s, not to its stored job_hash", computed)
	}
	e := conflictEvent(j, p, now, ReasonStoredJobTampered, call+" refused: "+why)
	e.PresentedHash = computed
	if err := appendEvent(ctx, tx, &e); err != nil {
		return nil, err
	}
	return nil, refuseAfterCommit(&Error{Code: CodeDataLoss, Reason: ReasonStoredJobTampered,
		Msg:  "the stored job does not match what was decided and approved: nothing was handed out; restore it and investigate",
		Meta: map[string]string{"expected_job_hash": decided, "computed_job_hash": computed}})
}

// chainVerdict compares j with its chain: it returns the hash the latest decision event
// names (j's stored hash when there is none to compare), and why j disagrees with the
// chain, or "".
func chainVerdict(events []evidence.Event, j *store.Job) (decided, why string) {
	last := -1
	for i := range events {
		if events[i].Kind == evidence.KindDecision {
			last = i
		}
	}
	if last < 0 {
		return j.Hash, "the job has no decision event"
	}
	d := events[last]
	if published(j.Status) {
		// A published job left through a publish or replay event of its current attempt.
		out := false
		for _, e := range events[last+1:] {
			if (e.Kind == evidence.KindPublish || e.Kind == evidence.KindReplay) && e.Attempt == j.Attempt {
				out = true
			}
		}
		if !out {
			return d.JobHash, fmt.Sprintf("it is stored as %s (attempt %d) and its evidence holds no publish of that attempt", j.Status, j.Attempt)
		}
	}
	switch {
	case d.JobHash != j.Hash:
		return d.JobHash, fmt.Sprintf("its decision event names job_hash %s, the stored job %s", d.JobHash, j.Hash)
	case d.Decision != j.Decision:
		return d.JobHash, fmt.Sprintf("its decision event says %s, the stored job %s", d.Decision, j.Decision)
	case d.Decision != "require_human" || !approvedStatus(j):
		return d.JobHash, "" // not approved yet: the lifecycle's own checks refuse it
	}
	for _, e := range events[last+1:] {
		if e.Kind == evidence.KindApproval && e.Status == string(store.StatusApproved) && e.JobHash == j.Hash {
			return d.JobHash, ""
		}
	}
	return d.JobHash, "it needs a human's approval and its evidence holds none that completed the quorum"
}

// ruleVerdict holds the columns a decision derives from its rule — the snapshot, the
// approver roles, the quorum and the approval deadline — to what the decision event's
// snapshot says for this content at the event's time. No event carries them, and a
// rewritten quorum, deadline or snapshot would otherwise let an approval outlive or
// outgrow what the policy gave. It returns why j disagrees, or "".
func (s *Service) ruleVerdict(ctx context.Context, tx store.Tx, events []evidence.Event, j *store.Job) (string, error) {
	var d *evidence.Event
	for i := range events {
		if events[i].Kind == evidence.KindDecision {
			d = &events[i]
		}
	}
	if d == nil {
		return "", nil // chainVerdict has said so
	}
	if d.PolicySnapshot != j.Snapshot {
		return fmt.Sprintf("its decision event names snapshot %s, the stored job %s", d.PolicySnapshot, j.Snapshot), nil
	}
	var eng *decision.Engine
	if act, ok := s.tracker.Current(); ok && act.Snapshot.ID == d.PolicySnapshot {
		eng = act.Engine
	} else {
		snap, err := tx.GetSnapshot(ctx, d.PolicySnapshot)
		if err != nil {
			return "", err
		}
		if eng, err = s.cache.Engine(snap); err != nil {
			return "", err
		}
	}
	labels, err := decodeLabels(j.Labels)
	if err != nil {
		return "its labels cannot be decoded: " + err.Error(), nil
	}
	res, err := eng.Evaluate(&decision.Job{Topic: j.Topic, Actor: j.Actor, Labels: labels})
	if err != nil {
		return "its content breaks the schema of the snapshot that decided it: " + err.Error(), nil
	}
	switch {
	case res.Decision.String() != d.Decision || res.RuleID != d.RuleID:
		return fmt.Sprintf("its snapshot decides %s by rule %s, its decision event %s by rule %s",
			res.Decision, res.RuleID, d.Decision, d.RuleID), nil
	case res.Decision != decision.RequireHuman:
		return "", nil
	case j.Quorum != res.Approval.Quorum:
		return fmt.Sprintf("its rule asks for %d approvals, the stored job %d", res.Approval.Quorum, j.Quorum), nil
	case !slices.Equal(j.ApprovalRoles, res.Approval.Roles):
		return fmt.Sprintf("its rule names approver roles %v, the stored job %v", res.Approval.Roles, j.ApprovalRoles), nil
	case j.DecidedAt != d.At || j.ExpiresAt != d.At+res.Approval.TTL.Microseconds():
		return fmt.Sprintf("its approval deadline is %d (decided at %d, ttl %s), the stored job's %d (decided at %d)",
			d.At+res.Approval.TTL.Microseconds(), d.At, res.Approval.TTL, j.ExpiresAt, j.DecidedAt), nil
	}
	return "", nil
}
