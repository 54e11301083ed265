package audit_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/agate-pdp/agate/audit"
	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// witnessedEnv is a SQLite env whose sealer appends to a witness file, with pay-1 sealed
// by checkpoint 1 and pay-2 sealed by checkpoint 2 alone.
func witnessedEnv(t *testing.T) (e *env, path string, last *store.Checkpoint) {
	t.Helper()
	ctx := context.Background()
	e = newEnv(t, "sqlite")
	path = filepath.Join(t.TempDir(), "witness.jsonl")
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
	last = e.seal(t)
	if last == nil || last.Seq != 2 || len(last.Heads) != 1 || last.Heads[0].JobID != "pay-2" {
		t.Fatalf("the newest checkpoint %+v should be #2 and seal pay-2 alone", last)
	}
	return e, path, last
}

// TestInsiderExportLosesNewestCheckpointsAndTheirJobs: an archive of the whole
// evidence (open window) from which the newest checkpoint and the job only it sealed
// were removed verifies ok, although its own manifest says it held checkpoints up to
// #2; adding the witness files, which hold #2, changes nothing, because witness records
// are only compared within the checkpoints the file happens to hold. Removing the
// oldest checkpoint and its job, and marking the manifest windowed, passes the same way,
// though an open window always starts at checkpoint 1.
func TestInsiderExportLosesNewestCheckpointsAndTheirJobs(t *testing.T) {
	t.Parallel()
	e, path, _ := witnessedEnv(t)
	exp := exportOf(t, e, audit.Window{})
	if exp.Manifest.FirstCheckpoint != 1 || exp.Manifest.LastCheckpoint != 2 || len(exp.Checkpoints) != 2 {
		t.Fatalf("export: manifest %+v, %d checkpoints", exp.Manifest, len(exp.Checkpoints))
	}
	witnessed := must(audit.ReadWitnessFile(path))(t)

	drop := func(seq int64, job string) audit.Export {
		return audit.Export{
			Manifest:    exp.Manifest,
			Events:      slices.DeleteFunc(slices.Clone(exp.Events), func(ev evidence.Event) bool { return ev.JobID == job }),
			Checkpoints: slices.DeleteFunc(slices.Clone(exp.Checkpoints), func(c store.Checkpoint) bool { return c.Seq == seq }),
		}
	}
	newest := drop(2, "pay-2")
	oldest := drop(1, "pay-1")
	m := *exp.Manifest
	m.FirstCheckpoint = 2 // the window fields still say: everything
	oldest.Manifest = &m

	for _, c := range []struct {
		name    string
		exp     audit.Export
		witness bool
	}{
		{"newest checkpoint and pay-2 removed, manifest as exported", newest, false},
		{"newest checkpoint and pay-2 removed, manifest as exported, with the witness", newest, true},
		{"oldest checkpoint and pay-1 removed, manifest marked windowed, with the witness", oldest, true},
	} {
		trust := pinned()
		if c.witness {
			trust.Witnessed = witnessed
		}
		if rep := audit.VerifyExport(trust, c.exp, false); rep.OK() {
			t.Errorf("%s: verifies ok (%d events, %d checkpoints, %d witness records)", c.name,
				rep.EventsVerified, rep.CheckpointsVerified, rep.WitnessedVerified)
		}
	}
}

// TestInsiderWitnessAbortRecordsAreUnsigned: abort records carry no signature, so
// anyone who can append to a witness file (the README suggests append-only storage)
// can cancel the record of any checkpoint. Drop the newest checkpoint and the chain it
// alone sealed from the database, append one line to the witness, and verification with
// the witness says ok.
func TestInsiderWitnessAbortRecordsAreUnsigned(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e, path, last := witnessedEnv(t)
	e.raw(t, `DELETE FROM checkpoint_heads WHERE checkpoint_seq = $1`, last.Seq)
	e.raw(t, `DELETE FROM checkpoints WHERE seq = $1`, last.Seq)
	e.raw(t, `DELETE FROM evidence WHERE job_id = 'pay-2'`)
	trust := pinned()
	trust.Witnessed = must(audit.ReadWitnessFile(path))(t)
	if rep := must(e.audit.VerifyWith(ctx, audit.Window{}, trust))(t); rep.OK() {
		t.Fatal("the witness did not catch the dropped checkpoint to begin with")
	}

	f := must(os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0))(t)
	_, err := fmt.Fprintf(f, `{"aborted": {"seq": %d, "hash": %q}}`+"\n", last.Seq, last.Hash)
	_ = f.Close()
	if err != nil {
		t.Fatal(err)
	}
	trust.Witnessed = must(audit.ReadWitnessFile(path))(t)
	if rep := must(e.audit.VerifyWith(ctx, audit.Window{}, trust))(t); rep.OK() {
		t.Error("one appended, unsigned abort line hides a dropped checkpoint and the job it sealed")
	}
}
