package e2e

import (
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/agate-pdp/agate/evidence"
	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/server"
	"github.com/agate-pdp/agate/store/postgres/pgtest"
)

// auditArgs are the flags of an audited replica: the signing key its database's
// replicas share, a checkpoint every 100 ms, and queries settled after a second.
func auditArgs(key string) []string {
	return []string{"--evidence-key", key, "--seal-interval", "100ms", "--evidence-settle", "1s"}
}

// testSeed is the workload's seed: AGATE_TEST_SEED repeats a logged run.
func testSeed(t *testing.T) uint64 {
	if s := os.Getenv("AGATE_TEST_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("AGATE_TEST_SEED: %v", err)
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}

// TestAuditProofPostgres is the proof: a randomized mix of jobs through every
// path, on two replicas of one PostgreSQL that both seal, and then the auditors' view
// agrees with what the test itself counted.
func TestAuditProofPostgres(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	key := filepath.Join(t.TempDir(), "evidence.key")
	rs := []*agate{startAgate(t, url, auditArgs(key)...), startAgate(t, url, auditArgs(key)...)}
	start := time.Now()
	tl := runWorkload(t, rs, 520, testSeed(t), "job")
	t.Logf("workload: %d events in %v", tl.total(), time.Since(start).Round(time.Millisecond))
	export := checkAudit(t, rs[1], tl)
	pem := publicKeyFile(t, key)
	agateOK(t, "evidence", "verify", "--db", url, "--public-key", pem)
	agateOK(t, "evidence", "verify", "--file", export, "--public-key", pem)
}

// TestAuditProofSQLite is the proof at a smaller scale on the embedded database, and
// runs the README's commands for auditors against it.
func TestAuditProofSQLite(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "agate.db")
	a := startAgate(t, db, "--seal-interval", "100ms", "--evidence-settle", "1s") // the key next to the database
	tl := runWorkload(t, []*agate{a}, 100, testSeed(t), "pay")
	checkAudit(t, a, tl)
	runAuditorCommands(t, a, db, tl)
}

// checkAudit asks a replica every auditor's question and compares the answers with
// what the workload counted. It returns the path of an export of everything.
func checkAudit(t *testing.T, a *agate, tl *tally) string {
	t.Helper()
	ctx := ctxT(t)
	ev := a.evidence()
	total, jobs := tl.total(), int64(len(tl.status))

	// Paging over every settled event returns each once, in order.
	waitFor(t, "every event to settle", 20*time.Second, func() bool {
		return int64(len(queryAll(t, a, &agatev1.QueryEvidenceRequest{PageSize: 97}))) == total
	})

	c, err := ev.CheckCompleteness(as(ctx, tokAudit), &agatev1.CheckCompletenessRequest{})
	if err != nil || len(c.Findings) != 0 || c.EventsChecked != total || c.JobsChecked != jobs {
		t.Errorf("CheckCompleteness = %v, %v; want no findings over %d events and %d jobs", c, err, total, jobs)
	}

	finished := int64(0)
	for _, s := range tl.status {
		if slices.Contains([]string{"denied", "rejected", "expired", "cancelled", "allowed_and_published",
			"approved_and_published", "succeeded", "failed"}, s) {
			finished++
		}
	}
	seed := int64(42)
	sa, err := ev.SampleAudit(as(ctx, tokAudit), &agatev1.SampleAuditRequest{N: 30, Seed: &seed})
	if err != nil {
		t.Fatal(err)
	}
	if s := sa.Summary; s.Sampled != 30 || s.Passed != 30 || s.Failed != 0 || s.Population != finished || s.Seed != seed {
		t.Errorf("SampleAudit summary = %v; want 30 of %d sampled, all passed", s, finished)
	}
	for _, v := range sa.Verdicts {
		if !v.Passed || len(v.Checks) != 8 {
			t.Errorf("verdict %v", v)
		}
	}

	// The mapping of evidence/controls.yaml, applied to the counted events.
	n := tl.events
	want := map[string]int64{
		"policy-gate":         n["decision"] + n["policy_activation"],
		"approval-integrity":  n["approval"] + n["rejection"] + n["conflict"] + n["publish"] + n["expiry"],
		"idempotent-approval": n["approval"] + n["rejection"] + n["conflict:LOCK_BUSY"] + n["refusal"],
		"replay":              n["replay"] + n["outcome"] + n["publish"],
	}
	m, err := ev.ControlMatrix(as(ctx, tokAudit), &agatev1.ControlMatrixRequest{})
	if err != nil || len(m.Controls) != 4 {
		t.Fatalf("ControlMatrix = %v, %v", m, err)
	}
	for _, c := range m.Controls {
		if c.EventCount != want[c.Id] || c.IncompleteCount != 0 {
			t.Errorf("control %s: %d events (%d incomplete), counted %d", c.Id, c.EventCount, c.IncompleteCount, want[c.Id])
		}
	}

	st, err := ev.Stats(as(ctx, tokAudit), &agatev1.StatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	statuses := map[string]int64{}
	for _, s := range tl.status {
		statuses[s]++
	}
	refusals := map[string]int64{}
	for _, code := range []string{"ALREADY_REJECTED", "ALREADY_APPROVED", "SELF_APPROVAL", "NOT_PENDING"} {
		if n["refusal:"+code] > 0 {
			refusals[code] = n["refusal:"+code]
		}
	}
	if st.AlreadyApproved != tl.alreadyApproved || st.AlreadyRejected != tl.alreadyRejected ||
		st.LockBusyConflicts != n["conflict:LOCK_BUSY"] || st.SnapshotDriftConflicts != n["conflict:SNAPSHOT_DRIFT"] ||
		st.JobHashMismatchConflicts != n["conflict:JOB_HASH_MISMATCH"] || st.ReplayedJobs != int64(len(tl.replayed)) ||
		st.Replays != n["replay"] || !maps.Equal(st.ReplaysByReason, tl.replaysByReason) ||
		!maps.Equal(st.Statuses, statuses) || !maps.Equal(st.Decisions, tl.decisions) ||
		!maps.Equal(st.RefusalsByReason, refusals) {
		t.Errorf("Stats = %v\ncounted: approved %d rejected %d events %v replays %v statuses %v decisions %v",
			st, tl.alreadyApproved, tl.alreadyRejected, n, tl.replaysByReason, statuses, tl.decisions)
	}
	if n["conflict:SNAPSHOT_DRIFT"] == 0 || n["conflict:JOB_HASH_MISMATCH"] == 0 || n["replay"] == 0 ||
		tl.alreadyApproved == 0 || tl.alreadyRejected == 0 || n["refusal"] == 0 || n["outcome"] == 0 {
		t.Errorf("the workload missed a path: %v", n)
	}

	// Every replica seals: wait until every chain's head is in a checkpoint, then verify.
	var path string
	waitFor(t, "every chain to be sealed", 20*time.Second, func() bool {
		var sealed bool
		path, sealed = exportAll(t, a)
		return sealed
	})
	v, err := ev.VerifyEvidence(as(ctx, tokAudit), &agatev1.VerifyEvidenceRequest{})
	if err != nil {
		t.Fatalf("VerifyEvidence: %v", err)
	}
	if !v.Ok || v.EventsVerified != total || v.ChainsVerified != jobs+1 || v.CheckpointsVerified == 0 {
		t.Errorf("VerifyEvidence = %v, %v; want ok over %d events in %d chains", v, err, total, jobs+1)
	}
	t.Logf("verified %d events in %d chains, %d checkpoints", v.EventsVerified, v.ChainsVerified, v.CheckpointsVerified)
	return path
}

// queryAll pages through QueryEvidence and checks that no event repeats and the order holds.
func queryAll(t *testing.T, a *agate, req *agatev1.QueryEvidenceRequest) []*agatev1.EvidenceEvent {
	t.Helper()
	ctx := ctxT(t)
	var all []*agatev1.EvidenceEvent
	seen := map[string]bool{}
	for {
		page, err := a.evidence().QueryEvidence(as(ctx, tokAudit), req)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Events {
			if seen[e.EventId] {
				t.Fatalf("event %s returned twice", e.EventId)
			}
			if k := len(all); k > 0 && (e.At < all[k-1].At || e.At == all[k-1].At && e.EventId < all[k-1].EventId) {
				t.Fatalf("event %s out of order", e.EventId)
			}
			seen[e.EventId] = true
			all = append(all, e)
		}
		if page.NextPageToken == "" {
			return all
		}
		req.PageToken = page.NextPageToken
	}
}

// exportAll writes ExportEvidence to a file as grpcurl prints it, and reports whether
// the checkpoints in it seal every chain at its last event.
func exportAll(t *testing.T, a *agate) (string, bool) {
	t.Helper()
	stream, err := a.evidence().ExportEvidence(as(ctxT(t), tokAudit), &agatev1.ExportEvidenceRequest{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "export.json")
	var b strings.Builder
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out, err := protojson.MarshalOptions{Multiline: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(out)
		b.WriteString("\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	exp, err := server.ReadExport(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	events, cps := exp.Events, exp.Checkpoints
	heads := map[string]evidence.Head{}
	for _, e := range events {
		if e.Seq > heads[e.JobID].Seq {
			heads[e.JobID] = evidence.Head{JobID: e.JobID, Seq: e.Seq, Hash: e.Hash}
		}
	}
	var sealed []evidence.Checkpoint
	for _, c := range cps {
		sealed = append(sealed, c.Checkpoint)
	}
	return path, maps.Equal(evidence.LatestHeads(sealed), heads)
}

// publicKeyFile pins the key as an operator would, with `agate evidence public-key`.
func publicKeyFile(t *testing.T, key string) string {
	t.Helper()
	out := agateOK(t, "evidence", "public-key", "--evidence-key", key)
	path := filepath.Join(t.TempDir(), "evidence-key.pem")
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// agateRun runs the binary and returns its output and exit status.
func agateRun(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(agateBinary(t), args...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("agate %v: %v", args, err)
	return "", 0
}

// agateOK runs the binary and requires success.
func agateOK(t *testing.T, args ...string) string {
	t.Helper()
	out, code := agateRun(t, args...)
	if code != 0 {
		t.Fatalf("agate %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}
