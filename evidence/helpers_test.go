package evidence

import (
	"fmt"
	"testing"
)

// fullEvent returns an event of kind k with every field set, so blanking any one
// field leaves exactly that one missing.
func fullEvent(k Kind) Event {
	return Event{
		EventID: "01JQ0000000000000000000001", JobID: "job_4ab2", Seq: 1, TraceID: "trc_91ff",
		Kind: k, At: 1775037723000000, Actor: "agent-7", Principal: "svc-billing",
		Decision: "require_human", ApprovalRequired: true, RuleID: "require-approval-prod-finance",
		Reason: "production payments need a human", MatchedRules: []string{"require-approval-prod-finance"},
		PolicySnapshot: "snap_2026_04_01_17", PreviousSnapshot: "snap_2026_03_30_02",
		JobHash: "sha256:8c4f", PresentedHash: "sha256:9d5e", ApprovedBy: "alice@example.com",
		ApprovedRole: "admin", ApprovedAt: 1775037723000000, Status: "approved_and_published",
		Attempt: 1, Conflict: "SNAPSHOT_DRIFT", ReplayReasonCode: "WORKER_OUTAGE",
		AuthMethod: "oidc:https://login.example.com",
	}
}

// blank clears one field by its wire name; every field any kind requires is here.
var blank = map[string]func(*Event){
	"event_id":           func(e *Event) { e.EventID = "" },
	"job_id":             func(e *Event) { e.JobID = "" },
	"seq":                func(e *Event) { e.Seq = 0 },
	"trace_id":           func(e *Event) { e.TraceID = "" },
	"kind":               func(e *Event) { e.Kind = "" },
	"at":                 func(e *Event) { e.At = 0 },
	"actor":              func(e *Event) { e.Actor = "" },
	"principal":          func(e *Event) { e.Principal = "" },
	"decision":           func(e *Event) { e.Decision = "" },
	"rule_id":            func(e *Event) { e.RuleID = "" },
	"reason":             func(e *Event) { e.Reason = "" },
	"policy_snapshot":    func(e *Event) { e.PolicySnapshot = "" },
	"job_hash":           func(e *Event) { e.JobHash = "" },
	"approved_by":        func(e *Event) { e.ApprovedBy = "" },
	"approved_role":      func(e *Event) { e.ApprovedRole = "" },
	"approved_at":        func(e *Event) { e.ApprovedAt = 0 },
	"status":             func(e *Event) { e.Status = "" },
	"attempt":            func(e *Event) { e.Attempt = 0 },
	"conflict":           func(e *Event) { e.Conflict = "" },
	"replay_reason_code": func(e *Event) { e.ReplayReasonCode = "" },
	// Fields no kind requires; blanking them must never fail validation.
	"approval_required": func(e *Event) { e.ApprovalRequired = false },
	"matched_rules":     func(e *Event) { e.MatchedRules = nil },
	"previous_snapshot": func(e *Event) { e.PreviousSnapshot = "" },
	"presented_hash":    func(e *Event) { e.PresentedHash = "" },
	"repeat":            func(e *Event) { e.Repeat = false },
	"auth_method":       func(e *Event) { e.AuthMethod = "" },
}

// chainKinds is the kind sequence of a typical approved, published job.
var chainKinds = []Kind{KindDecision, KindApproval, KindPublish, KindOutcome, KindReplay, KindOutcome}

// sealedChain returns a valid chain of n events for job, sealed as the store would.
func sealedChain(t testing.TB, job string, n int) []Event {
	t.Helper()
	var out []Event
	prev := ""
	for i := 1; i <= n; i++ {
		e := fullEvent(chainKinds[(i-1)%len(chainKinds)])
		e.JobID = job
		e.EventID = fmt.Sprintf("%s-ev%02d", job, i)
		e.At += int64(i)
		if err := e.Seal(int64(i-1), prev); err != nil {
			t.Fatalf("seal %d: %v", i, err)
		}
		prev = e.Hash
		out = append(out, e)
	}
	return out
}

// forge returns a new event at seq linking to prevHash, with a correctly
// recomputed hash, as an attacker who can write rows would make it.
func forge(t testing.TB, job string, seq int64, prevHash string) Event {
	t.Helper()
	e := fullEvent(KindApproval)
	e.JobID, e.EventID, e.ApprovedBy = job, job+"-forged", "mallory@example.com"
	e.Seq, e.PrevHash = seq, prevHash
	rehash(t, &e)
	return e
}

func rehash(t testing.TB, e *Event) {
	t.Helper()
	h, err := e.ComputeHash()
	if err != nil {
		t.Fatal(err)
	}
	e.Hash = h
}
