package audit_test

import (
	"context"
	"testing"

	"github.com/agate-pdp/agate/audit"
	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/jobs"
)

// TestVerifyNarrowsTheChange: a consistent rewrite (hashes recomputed, links kept) is
// placed between the last sealed head that still matches and the first that does not;
// a copy of the chain kept elsewhere pins the exact event.
func TestVerifyNarrowsTheChange(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.activate(t, policyV1)
		res := must(e.svc.Decide(ctx, decider, payment("pay-1")))(t)
		e.seal(t) // seals seq 1
		must(e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: "pay-1", JobHash: res.Job.Hash}))(t)
		must(e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: "pay-1", JobHash: res.Job.Hash}))(t)
		must(e.svc.ReportOutcome(ctx, dispatcher, jobs.OutcomeRequest{JobID: "pay-1", Attempt: 1, Succeeded: true}))(t)
		e.seal(t) // seals seq 4
		original := e.events(t, "pay-1")

		// Rewrite seq 3 and re-link seq 4, recomputing both hashes.
		three, four := original[2], original[3]
		three.Principal = "mallory"
		three.Hash = must(three.ComputeHash())(t)
		four.PrevHash = three.Hash
		four.Hash = must(four.ComputeHash())(t)
		e.raw(t, `UPDATE evidence SET principal = $1, hash = $2 WHERE event_id = $3`, three.Principal, three.Hash, three.EventID)
		e.raw(t, `UPDATE evidence SET prev_hash = $1, hash = $2 WHERE event_id = $3`, four.PrevHash, four.Hash, four.EventID)

		rep := must(e.audit.Verify(ctx, audit.Window{}))(t)
		if len(rep.Problems) != 1 {
			t.Fatalf("problems: %+v", rep.Problems)
		}
		p := rep.Problems[0]
		if p.Kind != evidence.Modified || p.JobID != "pay-1" || p.SpanFrom != 2 || p.SpanTo != 4 {
			t.Errorf("problem %+v, want modified pay-1 in seq 2 to 4", p)
		}
		trust := pinned()
		trust.Originals = original
		rep = must(e.audit.VerifyWith(ctx, audit.Window{}, trust))(t)
		if len(rep.Problems) != 1 || rep.Problems[0].SpanFrom != 3 || rep.Problems[0].SpanTo != 3 {
			t.Errorf("with the original copy: %+v, want the span pinned to seq 3", rep.Problems)
		}
		// A copy that does not match the sealed heads itself pins nothing.
		bad := append([]evidence.Event(nil), original...)
		bad[0].Reason = "edited copy"
		trust.Originals = bad
		rep = must(e.audit.VerifyWith(ctx, audit.Window{}, trust))(t)
		if len(rep.Problems) != 1 || rep.Problems[0].SpanFrom != 2 {
			t.Errorf("with a copy that does not verify: %+v", rep.Problems)
		}
	})
}
