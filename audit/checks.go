package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/agate-pdp/agate/canonical"
	"github.com/agate-pdp/agate/decision"
	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// The checks a sample audit applies to each job, in this order.
const (
	CheckFieldsComplete        = "fields_complete"         // summary and every event carry their required fields
	CheckJobHash               = "job_hash"                // job_hash recomputed from the stored job, and on every event
	CheckSnapshotIntegrity     = "snapshot_integrity"      // every snapshot named exists and matches its sha256
	CheckDecisionReplay        = "decision_replay"         // the decision re-evaluates identically under its snapshot
	CheckApprovalBeforePublish = "approval_before_publish" // the completed approval precedes every publish
	CheckSeparationOfDuties    = "separation_of_duties"    // no approver is the job's actor or submitter
	CheckQuorum                = "quorum"                  // enough distinct approvers, each on record
	CheckChainIntegrity        = "chain_integrity"         // the job's hash chain verifies
)

// CheckNames lists the sample audit's checks in the order verdicts report them.
var CheckNames = []string{CheckFieldsComplete, CheckJobHash, CheckSnapshotIntegrity, CheckDecisionReplay,
	CheckApprovalBeforePublish, CheckSeparationOfDuties, CheckQuorum, CheckChainIntegrity}

// subject is what the checks of one job read.
type subject struct {
	job       store.Job
	approvals []store.Approval // of the current revision
	events    []evidence.Event // the whole chain
	revision  []evidence.Event // from the latest decision event on
	snapshots map[string]error // every snapshot the job or its events name: nil when intact
}

func (s *Service) auditJob(ctx context.Context, tx store.Tx, id string) (Verdict, error) {
	sub := subject{snapshots: map[string]error{}}
	var err error
	if sub.job, err = tx.GetJob(ctx, id, false); err != nil {
		return Verdict{}, err
	}
	if sub.approvals, err = tx.ListApprovals(ctx, id, sub.job.Revision); err != nil {
		return Verdict{}, err
	}
	if sub.events, err = tx.ListEvents(ctx, id); err != nil {
		return Verdict{}, err
	}
	sub.revision = latestRevision(sub.events)
	engines := map[string]*decision.Engine{}
	for _, sid := range sub.snapshotIDs() {
		snap, err := tx.GetSnapshot(ctx, sid)
		switch {
		case errors.Is(err, store.ErrNotFound):
			sub.snapshots[sid] = fmt.Errorf("snapshot %s does not exist", sid)
			continue
		case err != nil:
			return Verdict{}, err
		}
		if err := snap.Verify(); err != nil {
			sub.snapshots[sid] = fmt.Errorf("snapshot %s: source does not match its sha256", sid)
			continue
		}
		sub.snapshots[sid] = nil
		if sid == sub.job.Snapshot {
			if engines[sid], err = s.cache.Engine(snap); err != nil {
				sub.snapshots[sid] = fmt.Errorf("snapshot %s does not compile: %v", sid, err)
			}
		}
	}
	checks := []Check{
		sub.fieldsComplete(),
		sub.jobHash(),
		sub.snapshotIntegrity(),
		sub.decisionReplay(engines[sub.job.Snapshot]),
		sub.approvalBeforePublish(),
		sub.separationOfDuties(),
		sub.quorum(),
		sub.chainIntegrity(),
	}
	v := Verdict{JobID: id, Passed: true, Checks: checks}
	for _, c := range checks {
		v.Passed = v.Passed && c.Passed
	}
	return v, nil
}

// latestRevision returns the events from the last decision event on: a re-decided job's
// earlier approvals and publishes no longer count.
func latestRevision(events []evidence.Event) []evidence.Event {
	for i := len(events) - 1; i >= 0; i-- {
		if events[i].Kind == evidence.KindDecision {
			return events[i:]
		}
	}
	return nil
}

func (sub *subject) snapshotIDs() []string {
	ids := []string{sub.job.Snapshot}
	for _, e := range sub.events {
		ids = append(ids, e.PolicySnapshot, e.PreviousSnapshot)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	return slices.DeleteFunc(ids, func(id string) bool { return id == "" })
}

func pass(name, detail string) Check { return Check{Name: name, Passed: true, Detail: detail} }

func fail(name string, problems []string) Check {
	if len(problems) == 0 {
		return Check{Name: name, Passed: true}
	}
	return Check{Name: name, Detail: strings.Join(problems, "; ")}
}

func (sub *subject) fieldsComplete() Check {
	var problems []string
	if missing := evidence.CheckSummary(summaryOf(sub.job)); missing != nil {
		problems = append(problems, "summary lacks "+strings.Join(missing, ", "))
	}
	for _, e := range sub.events {
		if missing := missingFields(&e); missing != nil {
			problems = append(problems, fmt.Sprintf("%s event #%d lacks %s", e.Kind, e.Seq, strings.Join(missing, ", ")))
		}
	}
	if len(sub.revision) == 0 {
		problems = append(problems, "no decision event")
	}
	return fail(CheckFieldsComplete, problems)
}

func (sub *subject) jobHash() Check {
	j := sub.job
	var problems []string
	labels, err := decodeLabels(j.Labels)
	if err != nil {
		problems = append(problems, err.Error())
	} else if h, err := canonical.JobHash(j.Topic, j.Actor, labels, j.Payload); err != nil {
		problems = append(problems, "the stored job does not hash: "+err.Error())
	} else if h != j.Hash {
		problems = append(problems, fmt.Sprintf("recomputed %s, stored %s", h, j.Hash))
	}
	for _, e := range sub.events {
		if e.JobHash != j.Hash {
			problems = append(problems, fmt.Sprintf("%s event #%d names job_hash %s", e.Kind, e.Seq, e.JobHash))
		}
	}
	return fail(CheckJobHash, problems)
}

func (sub *subject) snapshotIntegrity() Check {
	var problems []string
	for _, id := range sub.snapshotIDs() {
		if err := sub.snapshots[id]; err != nil {
			problems = append(problems, err.Error())
		}
	}
	return fail(CheckSnapshotIntegrity, problems)
}

func (sub *subject) decisionReplay(eng *decision.Engine) Check {
	j := sub.job
	if eng == nil {
		return fail(CheckDecisionReplay, []string{"snapshot " + j.Snapshot + " is not available to re-evaluate under"})
	}
	labels, err := decodeLabels(j.Labels)
	if err != nil {
		return fail(CheckDecisionReplay, []string{err.Error()})
	}
	res, err := eng.Evaluate(&decision.Job{Topic: j.Topic, Actor: j.Actor, Labels: labels})
	if err != nil {
		return fail(CheckDecisionReplay, []string{"re-evaluation failed: " + err.Error()})
	}
	var problems []string
	if got := res.Decision.String(); got != j.Decision || res.RuleID != j.RuleID || !slices.Equal(res.Matched, j.MatchedRules) {
		problems = append(problems, fmt.Sprintf("re-evaluates to %s by rule %s (matched %v); stored %s by rule %s (matched %v)",
			got, res.RuleID, res.Matched, j.Decision, j.RuleID, j.MatchedRules))
	}
	if (res.Decision == decision.RequireHuman) != j.ApprovalRequired {
		problems = append(problems, "approval_required disagrees with the decision")
	}
	if len(sub.revision) > 0 {
		if d := sub.revision[0]; d.Decision != j.Decision || d.RuleID != j.RuleID || d.PolicySnapshot != j.Snapshot {
			problems = append(problems, fmt.Sprintf("decision event #%d records %s by rule %s under %s", d.Seq, d.Decision, d.RuleID, d.PolicySnapshot))
		}
	}
	return fail(CheckDecisionReplay, problems)
}

// completingApproval returns the approval event that completed the current revision's
// quorum (the first non-repeat approval leaving the job approved), or nil.
func (sub *subject) completingApproval() *evidence.Event {
	for i := range sub.revision {
		e := &sub.revision[i]
		if e.Kind == evidence.KindApproval && !e.Repeat && e.Status == string(store.StatusApproved) {
			return e
		}
	}
	return nil
}

func isPublished(s store.Status) bool {
	switch s {
	case store.StatusAllowedAndPublished, store.StatusApprovedAndPublished, store.StatusSucceeded, store.StatusFailed:
		return true
	}
	return false
}

// approvalBeforePublish orders by seq, not by time: a chain's order is the order its
// transactions committed in, whatever the replicas' clocks said.
func (sub *subject) approvalBeforePublish() Check {
	j := sub.job
	if !j.ApprovalRequired {
		return pass(CheckApprovalBeforePublish, "not approval-gated")
	}
	approval := sub.completingApproval()
	var problems []string
	published := false
	for _, e := range sub.revision {
		if e.Kind != evidence.KindPublish && e.Kind != evidence.KindReplay {
			continue
		}
		published = true
		if approval == nil || e.Seq < approval.Seq {
			problems = append(problems, fmt.Sprintf("%s event #%d precedes any completed approval", e.Kind, e.Seq))
		}
	}
	if isPublished(j.Status) && !published {
		problems = append(problems, "the job is "+string(j.Status)+" but has no publish event")
	}
	if !published && len(problems) == 0 {
		return pass(CheckApprovalBeforePublish, "not published")
	}
	return fail(CheckApprovalBeforePublish, problems)
}

func (sub *subject) separationOfDuties() Check {
	j := sub.job
	if !j.ApprovalRequired {
		return pass(CheckSeparationOfDuties, "not approval-gated")
	}
	var problems []string
	self := func(who string) bool { return who == j.Actor || who == j.SubmittedBy }
	for _, a := range sub.approvals {
		if self(a.Approver) {
			problems = append(problems, a.Approver+" approved a job they act for or submitted")
		}
	}
	if j.ApprovedBy != "" && self(j.ApprovedBy) {
		problems = append(problems, "approved_by "+j.ApprovedBy+" is the job's actor or submitter")
	}
	for _, e := range sub.revision {
		if e.Kind == evidence.KindApproval && !e.Repeat && self(e.Principal) {
			problems = append(problems, fmt.Sprintf("approval event #%d is by %s, the job's actor or submitter", e.Seq, e.Principal))
		}
	}
	return fail(CheckSeparationOfDuties, problems)
}

func (sub *subject) quorum() Check {
	j := sub.job
	approved := j.Status == store.StatusApproved || j.Status == store.StatusApprovedAndPublished ||
		j.ApprovalRequired && (j.Status == store.StatusSucceeded || j.Status == store.StatusFailed)
	if !j.ApprovalRequired || !approved {
		return pass(CheckQuorum, "no completed approval to check")
	}
	var problems []string
	approvers := map[string]bool{}
	for _, a := range sub.approvals {
		approvers[a.Approver] = true
	}
	if len(approvers) < j.Quorum || j.Quorum < 1 {
		problems = append(problems, fmt.Sprintf("%d distinct approvers, quorum %d", len(approvers), j.Quorum))
	}
	if !approvers[j.ApprovedBy] {
		problems = append(problems, "approved_by "+j.ApprovedBy+" has no approval of the current revision")
	}
	onRecord := map[string]bool{}
	for _, e := range sub.revision {
		if e.Kind == evidence.KindApproval && !e.Repeat {
			onRecord[e.Principal] = true
		}
	}
	for a := range approvers {
		if !onRecord[a] {
			problems = append(problems, "the approval by "+a+" has no approval event")
		}
	}
	slices.Sort(problems)
	return fail(CheckQuorum, problems)
}

func (sub *subject) chainIntegrity() Check {
	var problems []string
	for _, p := range evidence.VerifyChain(sub.events) {
		problems = append(problems, fmt.Sprintf("%s at #%d: %s", p.Kind, p.Seq, p.Detail))
	}
	return fail(CheckChainIntegrity, problems)
}

// decodeLabels reads a stored job's labels, a canonical JSON object of scalars.
func decodeLabels(b []byte) (map[string]any, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("the stored labels are not a JSON object: %v", err)
	}
	return m, nil
}
