package audit_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
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

// TestWitnessAbortWeight: an abort record excuses a witnessed checkpoint that never
// committed (its heads then count for nothing) only when a trusted key signed it and
// another valid checkpoint holds its position. The phantom checkpoint here seals a
// chain that never existed, so if it counted, that chain would be reported deleted.
func TestWitnessAbortWeight(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e, path, last := witnessedEnv(t)
	phantom := store.Checkpoint{Seq: last.Seq + 1}
	var err error
	phantom.Checkpoint, err = evidence.NewCheckpoint("01PHANTOM", last.At+1,
		[]evidence.Head{{JobID: "pay-9", Seq: 1, Hash: "sha256:00"}}, &last.Checkpoint, testKey)
	if err != nil {
		t.Fatal(err)
	}
	w := must(audit.OpenWitness(path))(t)
	t.Cleanup(func() { _ = w.Close() })
	if err := w.Append(phantom); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(phantom, testKey); err != nil {
		t.Fatal(err)
	}
	verify := func(records []audit.WitnessedCheckpoint) audit.Report {
		trust := pinned()
		trust.Witnessed = records
		return must(e.audit.VerifyWith(ctx, audit.Window{}, trust))(t)
	}
	keys := func(rep audit.Report) map[string]bool {
		got := map[string]bool{}
		for _, p := range rep.Problems {
			got[problemKey(p)] = true
		}
		return got
	}
	// Nothing holds position 3 yet: the abort has no weight, the phantom is reported.
	if got := keys(verify(must(audit.ReadWitnessFile(path))(t))); !got["deleted checkpoint #3"] || !got["deleted pay-9 #1 "] {
		t.Errorf("abort before another checkpoint took the position: %v", got)
	}
	must(e.svc.Decide(ctx, decider, payment("pay-3")))(t)
	if cp := e.seal(t); cp == nil || cp.Seq != phantom.Seq {
		t.Fatalf("the next checkpoint %+v should take position %d", cp, phantom.Seq)
	}
	records := must(audit.ReadWitnessFile(path))(t)
	if rep := verify(records); !rep.OK() {
		t.Errorf("signed abort, position taken: %+v", rep.Problems)
	}

	other := ed25519.NewKeyFromSeed([]byte("not the evidence key: 32 bytes!!"))
	for name, edit := range map[string]func(a *audit.WitnessAbort){
		"unsigned": func(a *audit.WitnessAbort) { a.KeyID, a.Signature = "", nil },
		"signed by another key": func(a *audit.WitnessAbort) {
			a.KeyID, a.Signature = evidence.KeyID(other.Public().(ed25519.PublicKey)), ed25519.Sign(other, audit.AbortMessage(phantom.Seq, phantom.Hash))
		},
		"signature of another checkpoint": func(a *audit.WitnessAbort) { a.Signature = ed25519.Sign(testKey, audit.AbortMessage(1, phantom.Hash)) },
	} {
		forged := slices.Clone(records)
		i := slices.IndexFunc(forged, func(r audit.WitnessedCheckpoint) bool { return r.Abort != nil })
		a := *forged[i].Abort
		edit(&a)
		forged[i].Abort = &a
		got := keys(verify(forged))
		if !got["bad_signature checkpoint #3"] || !got["deleted pay-9 #1 "] || len(got) != 2 {
			t.Errorf("%s abort record: %v, want it reported and the phantom's heads to count", name, got)
		}
	}
}

// failingCommits makes every ReadWrite fail with ErrConflict after its callback ran,
// rolled back, while fail is set: a sealer's witnessed checkpoint then never commits.
type failingCommits struct {
	store.Store
	fail atomic.Bool
}

func (s *failingCommits) ReadWrite(ctx context.Context, fn func(context.Context, store.Tx) error) error {
	return s.Store.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		if err := fn(ctx, tx); err != nil || !s.fail.Load() {
			return err
		}
		return store.ErrConflict
	})
}

// TestSealerSignsAborts: a checkpoint the sealer witnessed whose transaction then
// failed is marked aborted with a signed record, and once the next checkpoint takes
// its position, verification with the witness is clean.
func TestSealerSignsAborts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, "sqlite")
	path := filepath.Join(t.TempDir(), "witness.jsonl")
	w := must(audit.OpenWitness(path))(t)
	t.Cleanup(func() { _ = w.Close() })
	fc := &failingCommits{Store: e.st}
	var err error
	if e.sealer, err = audit.NewSealer(audit.SealerConfig{Store: fc, Key: testKey, Clock: e.clock.Now, Witness: w}); err != nil {
		t.Fatal(err)
	}
	e.activate(t, policyV1)
	must(e.svc.Decide(ctx, decider, payment("pay-1")))(t)
	fc.fail.Store(true)
	if cp := must(e.sealer.SealOnce(ctx))(t); cp != nil {
		t.Fatalf("a checkpoint committed through a failing store: %+v", cp)
	}
	fc.fail.Store(false)
	records := must(audit.ReadWitnessFile(path))(t)
	if len(records) != 2 || records[1].Abort == nil || len(records[1].Abort.Signature) == 0 ||
		!ed25519.Verify(testKey.Public().(ed25519.PublicKey), audit.AbortMessage(records[1].Seq, records[1].Hash), records[1].Abort.Signature) {
		t.Fatalf("witness after a failed commit: %+v, want the checkpoint and its signed abort", records)
	}
	if cp := e.seal(t); cp == nil || cp.Seq != records[0].Seq || cp.Hash == records[0].Hash {
		t.Fatalf("the next checkpoint %+v should take position %d", cp, records[0].Seq)
	}
	trust := pinned()
	trust.Witnessed = must(audit.ReadWitnessFile(path))(t)
	if rep := must(e.audit.VerifyWith(ctx, audit.Window{}, trust))(t); !rep.OK() || rep.WitnessedVerified != 3 {
		t.Errorf("VerifyWith the witness = %+v", rep)
	}
}

// TestManifestTamperEvident: an export's manifest is signed, and bound to the file's
// checkpoints: any field edited, a signature stripped (accepted only as legacy), a
// manifest of another export, a checkpoint added beyond its range, or another key,
// is reported.
func TestManifestTamperEvident(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e, _, _ := witnessedEnv(t)
	exp := exportOf(t, e, audit.Window{})
	if rep := audit.VerifyExport(pinned(), exp, false); !rep.OK() {
		t.Fatalf("untouched export: %+v", rep.Problems)
	}
	m := *exp.Manifest
	if m.Format != audit.ExportFormat || m.LastHash != exp.Checkpoints[1].Hash || len(m.Signature) == 0 {
		t.Fatalf("manifest %+v", m)
	}
	must(e.svc.Decide(ctx, decider, payment("pay-3")))(t)
	later := exportOf(t, e, audit.Window{}) // checkpoint 3 is not sealed yet: same checkpoints
	e.seal(t)
	newer := exportOf(t, e, audit.Window{})
	other := ed25519.NewKeyFromSeed([]byte("not the evidence key: 32 bytes!!"))
	otherSvc := must(audit.New(audit.Config{Store: e.st, Key: other}))(t)
	var byOther audit.Export
	if err := otherSvc.Export(ctx, audit.Window{}, func(it audit.ExportItem) error {
		if it.Manifest != nil {
			byOther.Manifest = it.Manifest
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	edited := func(edit func(m *audit.Manifest)) audit.Export {
		m := *exp.Manifest
		edit(&m)
		return audit.Export{Manifest: &m, Events: exp.Events, Checkpoints: exp.Checkpoints}
	}
	for _, c := range []struct {
		name   string
		exp    audit.Export
		legacy bool // verifies with legacy
	}{
		{"since edited", edited(func(m *audit.Manifest) { m.Since = 1 }), false},
		{"last checkpoint edited", edited(func(m *audit.Manifest) { m.LastCheckpoint = 1 }), false},
		{"last hash edited", edited(func(m *audit.Manifest) { m.LastHash = "sha256:00" }), false},
		{"format edited", edited(func(m *audit.Manifest) { m.Format = 2 }), false},
		{"signature stripped", edited(func(m *audit.Manifest) { m.KeyID, m.Signature = "", nil }), true},
		{"signed by another key", audit.Export{Manifest: byOther.Manifest, Events: exp.Events, Checkpoints: exp.Checkpoints}, false},
		{"no manifest", audit.Export{Events: exp.Events, Checkpoints: exp.Checkpoints}, true},
		{"checkpoint beyond the manifest", audit.Export{Manifest: exp.Manifest, Events: newer.Events, Checkpoints: newer.Checkpoints}, false},
		{"newer manifest, newest checkpoint dropped", audit.Export{Manifest: newer.Manifest, Events: later.Events, Checkpoints: later.Checkpoints}, false},
	} {
		if rep := audit.VerifyExport(pinned(), c.exp, false); rep.OK() {
			t.Errorf("%s: verifies", c.name)
		}
		if rep := audit.VerifyExport(pinned(), c.exp, true); rep.OK() != c.legacy {
			t.Errorf("%s: with legacy, ok = %v, want %v: %+v", c.name, rep.OK(), c.legacy, rep.Problems)
		}
	}
	// The manifest names the last checkpoint by its hash: one from another history at
	// the same position, validly signed, does not pass for it.
	fork := slices.Clone(exp.Checkpoints)
	var err error
	fork[1].Checkpoint, err = evidence.NewCheckpoint("01FORK", fork[1].At, fork[1].Heads, &fork[0].Checkpoint, testKey)
	if err != nil {
		t.Fatal(err)
	}
	if rep := audit.VerifyExport(pinned(), audit.Export{Manifest: exp.Manifest, Events: exp.Events, Checkpoints: fork}, false); rep.OK() {
		t.Error("a checkpoint of another history at the manifest's last position verifies")
	}
	// A Service without the private key exports nothing it cannot sign.
	pubOnly := must(audit.New(audit.Config{Store: e.st, PublicKey: testKey.Public().(ed25519.PublicKey)}))(t)
	if err := pubOnly.Export(ctx, audit.Window{}, func(audit.ExportItem) error { return nil }); err == nil {
		t.Error("Export without a signing key succeeded")
	}
	if _, err := audit.New(audit.Config{Store: e.st, Key: testKey, PublicKey: other.Public().(ed25519.PublicKey)}); err == nil {
		t.Error("New with a key and another public key succeeded")
	}
}
