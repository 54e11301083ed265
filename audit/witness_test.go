package audit_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agate-pdp/agate/audit"
	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// TestWitness: the witness file holds every checkpoint the sealer wrote; with it,
// verification finds the newest checkpoint dropped and the chain it alone sealed
// deleted, which the database alone cannot show. An altered witness record is
// reported, and a record marked aborted does not excuse a checkpoint whose position
// nothing else holds.
func TestWitness(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		path := filepath.Join(t.TempDir(), "witness.jsonl")
		w, err := audit.OpenWitness(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = w.Close() })
		if e.sealer, err = audit.NewSealer(audit.SealerConfig{Store: e.st, Key: testKey, Clock: e.clock.Now, Witness: w}); err != nil {
			t.Fatal(err)
		}
		e.activate(t, policyV1)
		must(e.svc.Decide(ctx, decider, payment("pay-1")))(t)
		e.seal(t)
		must(e.svc.Decide(ctx, decider, payment("pay-2")))(t)
		last := e.seal(t)
		if last == nil || len(last.Heads) != 1 || last.Heads[0].JobID != "pay-2" {
			t.Fatalf("the newest checkpoint %+v should seal pay-2 alone", last)
		}
		witnessed := must(audit.ReadWitnessFile(path))(t)
		if len(witnessed) != 2 || witnessed[1].Hash != last.Hash {
			t.Fatalf("witness holds %d checkpoints", len(witnessed))
		}

		// Drop the newest checkpoint and every trace of the chain it alone sealed.
		e.raw(t, `DELETE FROM checkpoint_heads WHERE checkpoint_seq = $1`, last.Seq)
		e.raw(t, `DELETE FROM checkpoints WHERE seq = $1`, last.Seq)
		e.raw(t, `DELETE FROM evidence WHERE job_id = 'pay-2'`)
		if rep := must(e.audit.Verify(ctx, audit.Window{}))(t); !rep.OK() {
			t.Fatalf("without the witness: %+v", rep.Problems)
		}
		trust := pinned()
		trust.Witnessed = witnessed
		rep := must(e.audit.VerifyWith(ctx, audit.Window{}, trust))(t)
		got := map[string]bool{}
		for _, p := range rep.Problems {
			got[problemKey(p)] = true
		}
		for _, want := range []string{"deleted checkpoint #2", "deleted pay-2 #1 "} {
			if !got[want] {
				t.Errorf("with the witness: want %q among %+v", want, rep.Problems)
			}
		}

		// An altered witness record is no evidence, and says so.
		forged := witnessed[1]
		forged.Heads = []evidence.Head{{JobID: "pay-9", Seq: 1, Hash: "sha256:00"}}
		trust.Witnessed = []audit.WitnessedCheckpoint{forged}
		rep = must(e.audit.VerifyWith(ctx, audit.Window{}, trust))(t)
		if len(rep.Problems) != 1 || rep.Problems[0].Kind != audit.BadSignature || !strings.Contains(rep.Problems[0].Detail, "witness") {
			t.Errorf("altered witness record: %+v", rep.Problems)
		}

		// A record marked aborted, even signed, excuses nothing while no other
		// checkpoint holds its position (see TestWitnessAbortWeight).
		if err := w.Abort(store.Checkpoint{Seq: last.Seq, Checkpoint: last.Checkpoint}, testKey); err != nil {
			t.Fatal(err)
		}
		trust.Witnessed = must(audit.ReadWitnessFile(path))(t)
		if n := len(trust.Witnessed); n != 3 || trust.Witnessed[2].Abort == nil {
			t.Errorf("after the abort the witness holds %d records, want 2 checkpoints and the abort", n)
		}
		rep = must(e.audit.VerifyWith(ctx, audit.Window{}, trust))(t)
		got = map[string]bool{}
		for _, p := range rep.Problems {
			got[problemKey(p)] = true
		}
		if !got["deleted checkpoint #2"] || !got["deleted pay-2 #1 "] || rep.WitnessedVerified != 3 {
			t.Errorf("a signed abort of a checkpoint whose position nothing holds excused it: %+v", rep.Problems)
		}
		// A torn last line, from a crash mid-write, is ignored; a bad line before
		// others is not.
		f := must(os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0))(t)
		_, _ = f.WriteString(`{"checkpoint": {"seq": 3, "che`)
		_ = f.Close()
		if _, err := audit.ReadWitnessFile(path); err != nil {
			t.Errorf("torn last line: %v", err)
		}
		f = must(os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0))(t)
		_, _ = f.WriteString("\n{}\n")
		_ = f.Close()
		if _, err := audit.ReadWitnessFile(path); err == nil {
			t.Error("a bad line in the middle was accepted")
		}
	})
}
