package jobs_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"testing"
	"time"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/store"
)

// referencePolicy is the compliance guide's reference policy with an approval block, for
// when examples/policy.yaml is not there.
const referencePolicy = `version: v1
rules:
  - id: require-approval-prod-finance
    when:
      topic: finance.payment.execute
      env: production
    decision: require_human
    approval: {roles: [admin, finance-approver], quorum: 1, ttl: 24h}

  - id: deny-unscoped-external-export
    when:
      topic: customer.data.export
      destination: external
      scope_validated: false
    decision: deny
`

// TestReferenceScenario walks the guide's approval-gated flow: a production finance
// payment needs a human, a finance-approver approves it, the dispatcher publishes it,
// and the job's summary carries every field of the reference event.
func TestReferenceScenario(t *testing.T) {
	t.Parallel()
	policy, err := os.ReadFile("../examples/policy.yaml")
	if errors.Is(err, fs.ErrNotExist) {
		policy = []byte(referencePolicy)
	} else if err != nil {
		t.Fatal(err)
	}
	forEachMode(t, func(t *testing.T, st store.Store, m commitMode) {
		t.Parallel()
		ctx := context.Background()
		e := m.env(t, st, string(policy))
		dec, err := e.svc.Decide(ctx, decider, jobs.DecideRequest{
			JobID: "job_4ab2", Topic: "finance.payment.execute", Actor: actor, TraceID: "trc_91ff",
			Labels:  map[string]any{"env": "production"},
			Payload: []byte(`{"amount": 1250.5, "currency": "EUR", "invoice": "INV-1001"}`),
		})
		wantNoErr(t, err)
		if dec.Job.Decision != "require_human" || dec.Job.RuleID != "require-approval-prod-finance" {
			t.Fatalf("decision %+v", dec.Job)
		}
		e.clock.Advance(5 * time.Minute)
		approver := jobs.Principal{ID: "alice@example.com", Roles: []string{"finance-approver"}}
		_, err = e.svc.Approve(ctx, approver, jobs.ApproveRequest{JobID: "job_4ab2", JobHash: dec.Job.Hash, Reason: "invoice checked"})
		wantNoErr(t, err)
		approvedAt := e.clock.Now().UnixMicro()
		e.clock.Advance(time.Minute)
		pub, err := e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: "job_4ab2", JobHash: dec.Job.Hash})
		wantNoErr(t, err)

		j := pub.Job
		summary := map[string]any{
			"job_id": j.ID, "trace_id": j.TraceID, "decision": j.Decision, "approval_required": j.ApprovalRequired,
			"policy_snapshot": j.Snapshot, "job_hash": j.Hash, "approved_by": j.ApprovedBy,
			"approved_role": j.ApprovedRole, "approved_at": j.ApprovedAt, "status": string(j.Status),
		}
		want := map[string]any{
			"job_id": "job_4ab2", "trace_id": "trc_91ff", "decision": "require_human", "approval_required": true,
			"policy_snapshot": e.snap, "job_hash": dec.Job.Hash, "approved_by": "alice@example.com",
			"approved_role": "finance-approver", "approved_at": approvedAt, "status": "approved_and_published",
		}
		for k, v := range want {
			if summary[k] != v {
				t.Errorf("%s = %v, want %v", k, summary[k], v)
			}
		}
		evs := e.wantKinds(t, "job_4ab2", "decision,approval,publish")
		for _, ev := range evs[1:] {
			// The guide's completeness check: approval-gated events need snapshot, hash, approver and time.
			if !ev.ApprovalRequired || ev.PolicySnapshot == "" || ev.JobHash == "" || ev.ApprovedBy == "" || ev.ApprovedAt == 0 {
				t.Errorf("%s event fails the reference check: %+v", ev.Kind, ev)
			}
		}
		if evs[2].Kind != evidence.KindPublish || evs[2].Status != "approved_and_published" || evs[2].ApprovedRole != "finance-approver" {
			t.Errorf("publish event %+v", evs[2])
		}
	})
}
