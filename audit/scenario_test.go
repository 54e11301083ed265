package audit_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/jobs"
)

// scenario is the evidence runScenario leaves: per job, its events' kinds (a repeat
// marked "+", a conflict or refusal with ":" and its code) and its final status.
type scenario struct {
	kinds    map[string]string
	statuses map[string]string
	finished []string // jobs a sample audit draws from, sorted
	snapV1   string
	snapV2   string
}

// runScenario drives one job down each path of the lifecycle, the clock advancing a
// second per call, and checks each call's answer on the way.
func runScenario(t *testing.T, e *env) scenario {
	t.Helper()
	ctx := context.Background()
	sc := scenario{kinds: map[string]string{}, statuses: map[string]string{}}
	step := func() { e.clock.Advance(time.Second) }
	decide := func(r jobs.DecideRequest) jobs.DecideResult {
		t.Helper()
		step()
		return must(e.svc.Decide(ctx, decider, r))(t)
	}
	approve := func(p jobs.Principal, id, hash string) (jobs.ApproveResult, error) {
		step()
		return e.svc.Approve(ctx, p, jobs.ApproveRequest{JobID: id, JobHash: hash})
	}
	publish := func(id, hash string) {
		t.Helper()
		step()
		must(e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: id, JobHash: hash}))(t)
	}
	outcome := func(id string, attempt int64, ok bool) {
		t.Helper()
		step()
		must(e.svc.ReportOutcome(ctx, dispatcher, jobs.OutcomeRequest{JobID: id, Attempt: attempt, Succeeded: ok}))(t)
	}
	wantCode := func(err error, reason string) {
		t.Helper()
		if je, ok := jobs.AsError(err); !ok || je.Reason != reason {
			t.Fatalf("err = %v, want %s", err, reason)
		}
	}

	sc.snapV1 = e.activate(t, policyV1)

	a1 := decide(request("allow-1", "reports.generate", "agent-7", map[string]any{"env": "dev"})).Job
	publish(a1.ID, a1.Hash)
	outcome(a1.ID, 1, true)
	sc.kinds[a1.ID], sc.statuses[a1.ID] = "decision,publish,outcome", "succeeded"

	d1 := decide(request("deny-1", "customer.data.export", "agent-9", map[string]any{"env": "production"})).Job
	sc.kinds[d1.ID], sc.statuses[d1.ID] = "decision", "denied"

	p1 := decide(payment("pay-1")).Job
	must(approve(alice, p1.ID, p1.Hash))(t)
	if r := must(approve(alice, p1.ID, p1.Hash))(t); !r.AlreadyApproved {
		t.Fatal("the approver's repeat is not already_approved")
	}
	// A caller without standing on the job learns nothing of it and writes nothing on its
	// chain: its attempts go on its own, as does a Decide reusing another's job id.
	outsider := jobs.Principal{ID: "svc-other", Roles: []string{"decide"}}
	_, err := approve(outsider, p1.ID, p1.Hash)
	wantCode(err, jobs.ReasonNotFound)
	step()
	_, err = e.svc.Decide(ctx, outsider, payment("pay-1"))
	wantCode(err, jobs.ReasonJobIDInUse)
	sc.kinds[evidence.PrincipalChain("svc-other")] = "refusal:NO_STANDING,refusal:JOB_ID_IN_USE"
	publish(p1.ID, p1.Hash)
	step()
	must(e.svc.Replay(ctx, dispatcher, jobs.ReplayRequest{JobID: p1.ID, JobHash: p1.Hash, ExpectedAttempt: 1,
		ReasonCode: "WORKER_OUTAGE", Reason: "worker lost"}))(t)
	outcome(p1.ID, 2, false)
	sc.kinds[p1.ID], sc.statuses[p1.ID] = "decision,approval,approval+,publish,replay,outcome", "failed"

	p2 := decide(payment("pay-2")).Job
	step()
	must(e.svc.Reject(ctx, bob, jobs.RejectRequest{JobID: p2.ID, JobHash: p2.Hash, Reason: "wrong amount"}))(t)
	step()
	if r := must(e.svc.Reject(ctx, alice, jobs.RejectRequest{JobID: p2.ID, JobHash: p2.Hash, Reason: "again"}))(t); !r.AlreadyRejected {
		t.Fatal("second rejection is not already_rejected")
	}
	_, err = approve(alice, p2.ID, p2.Hash)
	wantCode(err, jobs.ReasonAlreadyRejected)
	sc.kinds[p2.ID], sc.statuses[p2.ID] = "decision,rejection,rejection+,refusal:ALREADY_REJECTED", "rejected"

	self := payment("pay-3")
	self.Actor = alice.ID
	p3 := decide(self).Job
	_, err = approve(alice, p3.ID, p3.Hash)
	wantCode(err, jobs.ReasonSelfApproval)
	must(approve(bob, p3.ID, p3.Hash))(t)
	sc.kinds[p3.ID], sc.statuses[p3.ID] = "decision,refusal:SELF_APPROVAL,approval", "approved"

	p4 := decide(payment("pay-4")).Job
	_, err = approve(alice, p4.ID, "sha256:"+strings.Repeat("0", 64))
	wantCode(err, jobs.ReasonJobHashMismatch)
	sc.kinds[p4.ID], sc.statuses[p4.ID] = "decision,conflict:JOB_HASH_MISMATCH", "pending_approval"

	x1 := decide(request("xfer-1", "finance.transfer.large", "agent-7", map[string]any{"env": "production"})).Job
	must(approve(alice, x1.ID, x1.Hash))(t)
	must(approve(carol, x1.ID, x1.Hash))(t)
	publish(x1.ID, x1.Hash)
	sc.kinds[x1.ID], sc.statuses[x1.ID] = "decision,approval,approval,publish", "approved_and_published"

	// Decided under V1, then V2 becomes active.
	p5 := decide(payment("pay-5")).Job
	a2 := decide(request("allow-2", "reports.generate", "agent-7", map[string]any{"env": "dev"})).Job
	step()
	sc.snapV2 = e.activate(t, policyV2)
	_, err = approve(alice, p5.ID, p5.Hash)
	wantCode(err, jobs.ReasonSnapshotDrift)
	p5 = decide(payment("pay-5")).Job // re-decided under V2
	must(approve(alice, p5.ID, p5.Hash))(t)
	publish(p5.ID, p5.Hash)
	sc.kinds[p5.ID], sc.statuses[p5.ID] = "decision,conflict:SNAPSHOT_DRIFT,decision,approval,publish", "approved_and_published"
	publish(a2.ID, a2.Hash) // re-evaluated under V2, still allowed
	sc.kinds[a2.ID], sc.statuses[a2.ID] = "decision,publish", "allowed_and_published"

	sc.kinds[evidence.PolicyChain] = "policy_activation,policy_activation"
	sc.finished = []string{"allow-1", "allow-2", "deny-1", "pay-1", "pay-2", "pay-5", "xfer-1"}
	for job, want := range sc.kinds {
		if got := kinds(e.events(t, job)); got != want {
			t.Fatalf("evidence of %s = %s, want %s", job, got, want)
		}
	}
	return sc
}

// kinds lists the events' kinds as scenario does.
func kinds(evs []evidence.Event) string {
	var b []string
	for _, ev := range evs {
		k := string(ev.Kind)
		if ev.Repeat {
			k += "+"
		}
		if ev.Conflict != "" {
			k += ":" + ev.Conflict
		}
		b = append(b, k)
	}
	return strings.Join(b, ",")
}

// count returns how many of the scenario's events have kind k (and, when given, the
// conflict or refusal code).
func (sc scenario) count(k evidence.Kind, code string) int64 {
	var n int64
	for _, list := range sc.kinds {
		for _, item := range strings.Split(list, ",") {
			kind, c, _ := strings.Cut(strings.TrimSuffix(item, "+"), ":")
			if kind == string(k) && (code == "" || c == code) {
				n++
			}
		}
	}
	return n
}

func (sc scenario) total() int64 {
	var n int64
	for _, list := range sc.kinds {
		n += int64(strings.Count(list, ",") + 1)
	}
	return n
}
