package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/storetest"
)

func TestPolicies(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		ctx := context.Background()
		e := newEnv(t, st, "")
		first, err := e.svc.PutPolicy(ctx, admin, []byte(testPolicy), true)
		wantNoErr(t, err)
		if !first.Created || !first.Activated || first.Previous != "" || first.Snapshot.CreatedBy != admin.ID ||
			!first.Snapshot.CreatedAt.Equal(t0) || first.Snapshot.RuleCount != 3 {
			t.Fatalf("first %+v", first)
		}
		a := first.Snapshot.ID
		if act, ok := e.svc.Active(); !ok || act.Snapshot.ID != a {
			t.Fatalf("Active() = %v, %v", act, ok)
		}
		if j := e.decide(t, payment); j.Snapshot != a {
			t.Fatalf("Decide under %s, want %s (the tracker learns its own activation)", j.Snapshot, a)
		}

		same, err := e.svc.PutPolicy(ctx, mallory, []byte(testPolicy+"\n\n"), true)
		wantNoErr(t, err)
		if same.Created || same.Activated || same.Snapshot.ID != a || same.Snapshot.CreatedBy != admin.ID {
			t.Fatalf("identical content: %+v", same)
		}

		stored, err := e.svc.PutPolicy(ctx, admin, []byte(driftPolicy), false)
		wantNoErr(t, err)
		b := stored.Snapshot.ID
		if !stored.Created || stored.Activated || b == a {
			t.Fatalf("stored %+v", stored)
		}
		if j := e.decide(t, payment); j.Snapshot != a {
			t.Fatal("storing without activating changed the active snapshot")
		}
		got, err := e.svc.GetSnapshot(ctx, b)
		wantNoErr(t, err)
		if got.ID != b || string(got.Source) != string(snapshots.Canonical([]byte(driftPolicy))) {
			t.Fatalf("GetSnapshot %+v", got)
		}
		_, err = e.svc.GetSnapshot(ctx, "snap_0000000000000000")
		wantErr(t, err, jobs.CodeNotFound, jobs.ReasonNotFound)

		e.clock.Advance(time.Second)
		third, err := e.svc.PutPolicy(ctx, admin, []byte(calmPolicy), true)
		wantNoErr(t, err)
		if !third.Activated || third.Previous != a {
			t.Fatalf("third %+v", third)
		}
		back, err := e.svc.ActivateSnapshot(ctx, admin, a, false)
		wantNoErr(t, err)
		if !back.Activated || back.Previous != third.Snapshot.ID {
			t.Fatalf("rollback %+v", back)
		}
		again, err := e.svc.ActivateSnapshot(ctx, admin, a, false)
		wantNoErr(t, err)
		if again.Activated || !again.AlreadyActive {
			t.Fatalf("again %+v", again)
		}
		_, err = e.svc.ActivateSnapshot(ctx, admin, "snap_0000000000000000", false)
		wantErr(t, err, jobs.CodeNotFound, jobs.ReasonNotFound)
		_, err = e.svc.ActivateSnapshot(ctx, admin, "snap_0000000000000000", true)
		wantErr(t, err, jobs.CodeNotFound, jobs.ReasonNotFound)

		evs := e.wantKinds(t, evidence.PolicyChain, "policy_activation,policy_activation,policy_activation")
		for i, want := range [][2]string{{a, ""}, {third.Snapshot.ID, a}, {a, third.Snapshot.ID}} {
			if evs[i].PolicySnapshot != want[0] || evs[i].PreviousSnapshot != want[1] || evs[i].Reason != "activated" || evs[i].Principal != admin.ID {
				t.Fatalf("activation %d: %+v", i, evs[i])
			}
		}

		// Three snapshots, newest first, paged.
		var listed []string
		tok := ""
		for range 10 {
			page, next, err := e.svc.ListSnapshots(ctx, 2, tok)
			wantNoErr(t, err)
			for _, s := range page {
				listed = append(listed, s.ID)
			}
			if tok = next; tok == "" {
				break
			}
		}
		if !sameSet(listed, []string{a, b, third.Snapshot.ID}) || listed[0] != third.Snapshot.ID {
			t.Fatalf("ListSnapshots %v", listed)
		}

		_, err = e.svc.PutPolicy(ctx, admin, []byte("version: v1\nrules:\n  - id: x\n    decision: maybe\n"), true)
		ee := wantErr(t, err, jobs.CodeInvalidArgument, jobs.ReasonInvalidPolicy)
		if ee.Field != "source" || ee.Meta["line"] != "4" {
			t.Fatalf("policy error %+v", ee)
		}
		_, err = e.svc.PutPolicy(ctx, admin, nil, true)
		wantField(t, err, "source")
		e.wantKinds(t, evidence.PolicyChain, "policy_activation,policy_activation,policy_activation")
	})
}
