package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// testEvidenceSchema checks that the database itself enforces the evidence schema: for
// every kind, an event carrying exactly its required fields is stored, and the same
// event lacking any one of them is refused with evidence.ErrIncomplete even though
// nothing validated it first. The SQL constraints and evidence.Required cannot drift
// apart unnoticed.
func testEvidenceSchema(t *testing.T, s store.Store) {
	// Each kind on a job's chain, and a refusal on a principal's chain, which names no job.
	type shape struct {
		kind  evidence.Kind
		chain string
	}
	var shapes []shape
	for _, k := range evidence.Kinds {
		shapes = append(shapes, shape{k, "job_schema_" + string(k)})
	}
	shapes = append(shapes, shape{evidence.KindRefusal, evidence.PrincipalChain("schema@example.com")})
	for n, sh := range shapes {
		k := sh.kind
		req := evidence.RequiredFor(&evidence.Event{Kind: k, JobID: sh.chain})
		if len(req) == 0 {
			t.Fatalf("evidence kind %s has no required fields", k)
		}
		minimal := func() evidence.Event {
			e := evidence.Event{Kind: k, Seq: 1, JobID: sh.chain}
			for _, f := range req {
				if !setField(&e, f, true) {
					t.Fatalf("kind %s requires %q, which this suite does not know", k, f)
				}
			}
			e.JobID = sh.chain
			e.EventID += fmt.Sprint("_", n)
			return e
		}
		ok := minimal()
		if err := ok.Seal(0, ""); err != nil {
			t.Fatalf("kind %s on %s: a minimal event does not validate: %v", k, sh.chain, err)
		}
		write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.AppendEvent(ctx, ok) })

		for _, f := range append(req, "seq") {
			e := minimal()
			e.EventID += "_no_" + f
			e.Seq, e.Hash = 2, "sha256:unvalidated"
			setField(&e, f, false)
			err := s.ReadWrite(t.Context(), func(ctx context.Context, tx store.Tx) error {
				return tx.AppendEvent(ctx, e)
			})
			if !errors.Is(err, evidence.ErrIncomplete) {
				t.Errorf("kind %s on %s without %s: AppendEvent = %v, want evidence.ErrIncomplete", k, sh.chain, f, err)
			}
		}
	}
}

// setField sets (on) or clears (!on) the named field; false for an unknown name.
func setField(e *evidence.Event, name string, on bool) bool {
	str := func(p *string, v string) {
		if !on {
			v = ""
		}
		*p = v
	}
	num := func(p *int64, v int64) {
		if !on {
			v = 0
		}
		*p = v
	}
	switch name {
	case "event_id":
		str(&e.EventID, "01JSCHEMA"+string(e.Kind))
	case "job_id":
		str(&e.JobID, "job_schema_"+string(e.Kind))
	case "kind":
		if !on {
			e.Kind = ""
		}
	case "seq":
		num(&e.Seq, 1)
	case "at":
		num(&e.At, base)
	case "principal":
		str(&e.Principal, "alice@example.com")
	case "trace_id":
		str(&e.TraceID, "trc_1")
	case "actor":
		str(&e.Actor, "agent-7")
	case "policy_snapshot":
		str(&e.PolicySnapshot, "snap_a")
	case "job_hash":
		str(&e.JobHash, "sha256:aa")
	case "status":
		str(&e.Status, "approved")
	case "decision":
		str(&e.Decision, "require_human")
	case "rule_id":
		str(&e.RuleID, "r1")
	case "reason":
		str(&e.Reason, "because")
	case "approved_by":
		str(&e.ApprovedBy, "alice@example.com")
	case "approved_role":
		str(&e.ApprovedRole, "admin")
	case "approved_at":
		num(&e.ApprovedAt, base)
	case "attempt":
		num(&e.Attempt, 1)
	case "conflict":
		str(&e.Conflict, "SNAPSHOT_DRIFT")
	case "replay_reason_code":
		str(&e.ReplayReasonCode, "WORKER_OUTAGE")
	default:
		return false
	}
	return true
}
