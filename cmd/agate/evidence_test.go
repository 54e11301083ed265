package main

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/agate-pdp/agate/audit"
	"github.com/agate-pdp/agate/evidence"
	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store/sqlite"
)

func TestEvidenceKeyPath(t *testing.T) {
	t.Parallel()
	tests := []struct{ key, db, want string }{
		{"", "data/agate.db", "data/evidence.key"},
		{"", "/var/lib/agate/agate.db", "/var/lib/agate/evidence.key"},
		{"", "sqlite:///srv/a.db", "/srv/evidence.key"},
		{"", "postgres://agate@db:5432/agate", ""}, // required: Validate refuses it
		{"/run/secrets/agate.key", "postgres://agate@db/agate", "/run/secrets/agate.key"},
	}
	for _, tc := range tests {
		c := serveConfig{EvidenceKey: tc.key, DB: tc.db}
		if got := c.evidenceKeyPath(); got != tc.want {
			t.Errorf("evidenceKeyPath(key %q, db %q) = %q, want %q", tc.key, tc.db, got, tc.want)
		}
	}
	c := defaultServeConfig()
	c.TokensFile, c.SealInterval, c.EvidenceSettle, c.MaxClockSkew = "t.yaml", 0, -time.Second, 0
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "--seal-interval") || !strings.Contains(err.Error(), "--evidence-settle") ||
		!strings.Contains(err.Error(), "--max-clock-skew") {
		t.Errorf("Validate = %v, want the evidence durations refused", err)
	}
	// A database server needs a key file given, shared by every replica.
	c = defaultServeConfig()
	c.TokensFile, c.DB = "t.yaml", "postgres://agate@db/agate"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--evidence-key: is required") {
		t.Errorf("Validate without --evidence-key on PostgreSQL = %v", err)
	}
}

// sealedDB is a SQLite database with some sealed evidence and its key file.
func sealedDB(t *testing.T) (db, keyFile string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, keyFile = filepath.Join(dir, "agate.db"), filepath.Join(dir, "evidence.key")
	key, _, err := evidence.LoadOrCreateKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cache, _ := snapshots.NewCache(2)
	svc, err := jobs.New(jobs.Config{Store: st, Tracker: snapshots.NewTracker(st, cache, nil), Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.PutPolicy(ctx, jobs.Principal{ID: "owner"}, []byte("version: v1\n"), true); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"job-1", "job-2"} {
		if _, err := svc.Decide(ctx, jobs.Principal{ID: "svc"}, jobs.DecideRequest{JobID: id, Topic: "a.b", Actor: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	sealer, err := audit.NewSealer(audit.SealerConfig{Store: st, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if cp, err := sealer.SealOnce(ctx); err != nil || cp == nil {
		t.Fatalf("SealOnce = %v, %v", cp, err)
	}
	return db, keyFile
}

func TestEvidenceCLI(t *testing.T) {
	t.Parallel()
	db, keyFile := sealedDB(t)

	out, errs, code := runArgs(t, "evidence", "public-key", "--db", db)
	if code != 0 || !strings.Contains(out, "# key_id: ed25519:") {
		t.Fatalf("public-key: exit %d\n%s%s", code, out, errs)
	}
	pub, err := evidence.ParsePublicKey([]byte(out))
	if err != nil {
		t.Fatalf("public-key printed no PEM key: %v", err)
	}
	if !strings.Contains(out, "# hex: "+hex.EncodeToString(pub)) {
		t.Errorf("public-key lacks the hex form:\n%s", out)
	}
	pemFile := write(t, "pub.pem", out)
	if _, errs, code := runArgs(t, "evidence", "public-key", "--evidence-key", filepath.Join(t.TempDir(), "none.key")); code != 1 ||
		!strings.Contains(errs, "no evidence key") {
		t.Errorf("public-key of a missing file: exit %d, %s", code, errs)
	}
	if _, err := os.Stat(keyFile); err != nil {
		t.Fatal(err)
	}

	out, errs, code = runArgs(t, "evidence", "verify", "--db", db, "--public-key", pemFile)
	if code != 0 || !strings.Contains(out, "ok: verified 3 events in 3 chains, 1 checkpoints") {
		t.Fatalf("verify: exit %d\n%s%s", code, out, errs)
	}
	other := hex.EncodeToString(ed25519.NewKeyFromSeed(make([]byte, 32)).Public().(ed25519.PublicKey))
	out, _, code = runArgs(t, "evidence", "verify", "--db", db, "--public-key", other)
	if code != 1 || !strings.Contains(out, "bad_signature checkpoint=") || !strings.Contains(out, "FAILED: 1 problems") {
		t.Errorf("verify with another key: exit %d\n%s", code, out)
	}

	raw, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var eventID string
	if err := raw.QueryRow(`SELECT event_id FROM evidence WHERE job_id = 'job-2'`).Scan(&eventID); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`UPDATE evidence SET actor = 'someone-else' WHERE job_id = 'job-2'`); err != nil {
		t.Fatal(err)
	}
	out, _, code = runArgs(t, "evidence", "verify", "--db", db, "--public-key", hex.EncodeToString(pub))
	if want := "modified job=job-2 seq=1 event=" + eventID + ": "; code != 1 || !strings.HasPrefix(out, want) {
		t.Errorf("verify after tampering: exit %d\n%s\nwant a line starting %q", code, out, want)
	}

	for _, args := range [][]string{
		{"evidence", "verify", "--public-key", pemFile},
		{"evidence", "verify", "--db", db, "--file", "x", "--public-key", pemFile},
		{"evidence", "verify", "--db", db},
		{"evidence", "verify", "--file", "x", "--since", "5", "--public-key", pemFile},
		{"evidence", "nonsense"},
	} {
		if _, errs, code := runArgs(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errs)
		}
	}
}

func TestEvidenceVerifyFile(t *testing.T) {
	t.Parallel()
	key := ed25519.NewKeyFromSeed(make([]byte, 32))
	e := evidence.Event{EventID: "01J1", JobID: "job-1", TraceID: "t", Kind: evidence.KindDecision, At: 1,
		Actor: "a", Principal: "p", Decision: "allow", RuleID: "default", Reason: "r", PolicySnapshot: "snap_a",
		JobHash: "sha256:aa", Status: "allowed"}
	if err := e.Seal(0, ""); err != nil {
		t.Fatal(err)
	}
	cp, err := evidence.NewCheckpoint("01JCP", 2, []evidence.Head{{JobID: e.JobID, Seq: e.Seq, Hash: e.Hash}}, nil, key)
	if err != nil {
		t.Fatal(err)
	}
	item := func(m *agatev1.ExportEvidenceResponse) string {
		b, err := protojson.MarshalOptions{Multiline: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(b) + "\n"
	}
	ev := &agatev1.EvidenceEvent{EventId: e.EventID, JobId: e.JobID, Seq: e.Seq, TraceId: e.TraceID, Kind: string(e.Kind),
		At: e.At, Actor: e.Actor, Principal: e.Principal, Decision: e.Decision, RuleId: e.RuleID, Reason: e.Reason,
		PolicySnapshot: e.PolicySnapshot, JobHash: e.JobHash, Status: e.Status, Hash: e.Hash}
	ck := &agatev1.Checkpoint{CheckpointId: cp.ID, Seq: 1, At: cp.At, MerkleRoot: cp.Root, Hash: cp.Hash,
		Signature: cp.Signature, KeyId: cp.KeyID, Heads: []*agatev1.ChainHead{{JobId: e.JobID, Seq: e.Seq, Hash: e.Hash}}}
	m := &audit.Manifest{Format: audit.ExportFormat, FirstCheckpoint: 1, LastCheckpoint: 1, LastHash: cp.Hash}
	m.Sign(key)
	manifest := func(m *audit.Manifest) string {
		return item(&agatev1.ExportEvidenceResponse{Item: &agatev1.ExportEvidenceResponse_Manifest{Manifest: &agatev1.ExportManifest{
			Format: m.Format, Since: m.Since, Until: m.Until, FirstCheckpointSeq: m.FirstCheckpoint, LastCheckpointSeq: m.LastCheckpoint,
			LastCheckpointHash: m.LastHash, KeyId: m.KeyID, Signature: m.Signature}}})
	}
	body := item(&agatev1.ExportEvidenceResponse{Item: &agatev1.ExportEvidenceResponse_Event{Event: ev}}) +
		item(&agatev1.ExportEvidenceResponse{Item: &agatev1.ExportEvidenceResponse_Checkpoint{Checkpoint: ck}})
	pub := hex.EncodeToString(key.Public().(ed25519.PublicKey))
	out, errs, code := runArgs(t, "evidence", "verify", "--file", write(t, "export.json", manifest(m)+body), "--public-key", pub)
	if code != 0 || !strings.Contains(out, "ok: verified 1 events in 1 chains, 1 checkpoints") {
		t.Fatalf("verify file: exit %d\n%s%s", code, out, errs)
	}
	// The manifest is signed: one edited to say the window was bounded is reported,
	// and so is one whose signature was stripped, unless --legacy accepts it.
	edited := *m
	edited.Since = 5
	out, _, code = runArgs(t, "evidence", "verify", "--file", write(t, "edited.json", manifest(&edited)+body), "--public-key", pub)
	if code != 1 || !strings.Contains(out, "bad_signature manifest: the export's manifest") {
		t.Errorf("verify an edited manifest: exit %d\n%s", code, out)
	}
	unsigned := *m
	unsigned.KeyID, unsigned.Signature = "", nil
	file := write(t, "unsigned.json", manifest(&unsigned)+body)
	if out, _, code = runArgs(t, "evidence", "verify", "--file", file, "--public-key", pub); code != 1 || !strings.Contains(out, "is not signed") {
		t.Errorf("verify an unsigned manifest: exit %d\n%s", code, out)
	}
	if out, errs, code = runArgs(t, "evidence", "verify", "--file", file, "--public-key", pub, "--legacy"); code != 0 ||
		!strings.Contains(errs, "before manifests were signed") {
		t.Errorf("verify an unsigned manifest, --legacy: exit %d\n%s%s", code, out, errs)
	}
	ev.Reason = "edited"
	bad := manifest(m) + item(&agatev1.ExportEvidenceResponse{Item: &agatev1.ExportEvidenceResponse_Event{Event: ev}}) +
		item(&agatev1.ExportEvidenceResponse{Item: &agatev1.ExportEvidenceResponse_Checkpoint{Checkpoint: ck}})
	out, _, code = runArgs(t, "evidence", "verify", "--file", write(t, "bad.json", bad), "--public-key", pub)
	if code != 1 || !strings.Contains(out, "modified job=job-1 seq=1 event=01J1") {
		t.Errorf("verify edited file: exit %d\n%s", code, out)
	}
	if _, errs, code := runArgs(t, "evidence", "verify", "--file", write(t, "junk.json", "{not json"), "--public-key", pub); code != 1 || errs == "" {
		t.Errorf("verify junk: exit %d, %s", code, errs)
	}
}

// fixtureKey signed the exports in testdata, made before exports carried a manifest.
const fixtureKey = "eda77405a5d79787dfdace61e7c09797a4c0e213b8fe7ba9a29177f62e45d096"

// TestEvidenceVerifyOldExports: exports made before the manifest verify with --legacy
// only: without a signed manifest nothing shows that they hold their newest
// checkpoints. A windowed one held every checkpoint but only the window's chains, so
// its absent chains are named too.
func TestEvidenceVerifyOldExports(t *testing.T) {
	t.Parallel()
	out, errs, code := runArgs(t, "evidence", "verify", "--file", "testdata/export-v1.json", "--public-key", fixtureKey)
	if code != 1 || !strings.Contains(out, "deleted manifest: the export has no manifest") {
		t.Errorf("whole export, strict: exit %d\n%s%s", code, out, errs)
	}
	out, errs, code = runArgs(t, "evidence", "verify", "--file", "testdata/export-v1.json", "--public-key", fixtureKey, "--legacy")
	if code != 0 || !strings.Contains(out, "ok: verified 13 events in 7 chains, 6 checkpoints") {
		t.Errorf("whole export, --legacy: exit %d\n%s%s", code, out, errs)
	}
	out, errs, code = runArgs(t, "evidence", "verify", "--file", "testdata/export-v1-window.json", "--public-key", fixtureKey)
	if code != 1 || !strings.Contains(out, "deleted job=job-0 ") || !strings.Contains(out, "none of its events is here") {
		t.Errorf("windowed export, strict: exit %d\n%s%s", code, out, errs)
	}
	out, errs, code = runArgs(t, "evidence", "verify", "--file", "testdata/export-v1-window.json", "--public-key", fixtureKey, "--legacy")
	if code != 0 || !strings.Contains(errs, "its completeness is not") {
		t.Errorf("windowed export, --legacy: exit %d\n%s%s", code, out, errs)
	}
}
