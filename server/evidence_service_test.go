package server

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/agate-pdp/agate/audit"
	"github.com/agate-pdp/agate/evidence"
	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/sqlite"
)

// fullEvent has every field set, so a conversion that drops one is caught.
func fullEvent() evidence.Event {
	return evidence.Event{EventID: "01JEVENT", JobID: "pay-1", Seq: 3, TraceID: "trc", Kind: evidence.KindReplay,
		At: 1775037723000000, Actor: "agent-7", Principal: "dispatcher", Decision: "require_human",
		ApprovalRequired: true, RuleID: "r1", Reason: "worker lost", MatchedRules: []string{"r1", "r2"},
		PolicySnapshot: "snap_b", PreviousSnapshot: "snap_a", JobHash: "sha256:aa", PresentedHash: "sha256:bb",
		ApprovedBy: "alice@example.com", ApprovedRole: "admin", ApprovedAt: 1775037722000000, Status: "approved_and_published",
		Attempt: 2, Conflict: "SNAPSHOT_DRIFT", ReplayReasonCode: "WORKER_OUTAGE", Repeat: true,
		PrevHash: "sha256:01", Hash: "sha256:02", AuthMethod: "oidc:https://login.example.com"}
}

func TestEventRoundTrip(t *testing.T) {
	t.Parallel()
	e := fullEvent()
	for i, f := range reflect.VisibleFields(reflect.TypeFor[evidence.Event]()) {
		if reflect.ValueOf(e).Field(i).IsZero() {
			t.Fatalf("fullEvent leaves %s unset", f.Name)
		}
	}
	if got := EventFromWire(wireEvent(&e)); !reflect.DeepEqual(got, e) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, e)
	}
}

func testCheckpoint(t *testing.T) store.Checkpoint {
	t.Helper()
	key := ed25519.NewKeyFromSeed(make([]byte, 32))
	cp, err := evidence.NewCheckpoint("01JCP", 1775037723000000, []evidence.Head{{JobID: "a", Seq: 2, Hash: "sha256:aa"},
		{JobID: "b", Seq: 1, Hash: "sha256:bb"}}, &evidence.Checkpoint{Hash: "sha256:prev"}, key)
	if err != nil {
		t.Fatal(err)
	}
	return store.Checkpoint{Seq: 2, Checkpoint: cp}
}

// ReadExport reads back exactly what ExportEvidence sends, as grpcurl prints it:
// indented objects one after another.
func TestReadExport(t *testing.T) {
	t.Parallel()
	e, cp := fullEvent(), testCheckpoint(t)
	rot, err := evidence.NewRotation("01JROT", 1775037724000000, nil, &cp.Checkpoint,
		ed25519.NewKeyFromSeed(make([]byte, 32)), ed25519.NewKeyFromSeed(append([]byte{1}, make([]byte, 31)...)))
	if err != nil {
		t.Fatal(err)
	}
	rcp := store.Checkpoint{Seq: 3, Checkpoint: rot}
	manifest := &audit.Manifest{Format: audit.ExportFormat, Since: 1, Until: 2, FirstCheckpoint: 2, LastCheckpoint: 3, LastHash: rcp.Hash}
	manifest.Sign(ed25519.NewKeyFromSeed(make([]byte, 32)))
	var b strings.Builder
	for _, m := range []*agatev1.ExportEvidenceResponse{
		{Item: &agatev1.ExportEvidenceResponse_Manifest{Manifest: wireManifest(manifest)}},
		{Item: &agatev1.ExportEvidenceResponse_Event{Event: wireEvent(&e)}},
		{Item: &agatev1.ExportEvidenceResponse_Checkpoint{Checkpoint: wireCheckpoint(&cp)}},
		{Item: &agatev1.ExportEvidenceResponse_Checkpoint{Checkpoint: wireCheckpoint(&rcp)}},
	} {
		out, err := protojson.MarshalOptions{Multiline: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(out)
		b.WriteString("\n")
	}
	exp, err := ReadExport(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	events, cps := exp.Events, exp.Checkpoints
	if len(events) != 1 || !reflect.DeepEqual(events[0], e) {
		t.Errorf("events = %+v", events)
	}
	if len(cps) != 2 || !reflect.DeepEqual(cps[0], cp) || !reflect.DeepEqual(cps[1], rcp) {
		t.Errorf("checkpoints = %+v\nwant %+v, %+v", cps, cp, rcp)
	}
	if !reflect.DeepEqual(exp.Manifest, manifest) {
		t.Errorf("manifest = %+v, want %+v", exp.Manifest, manifest)
	}
	for _, bad := range []string{`{"event": {"seq": "x"}}`, `{}`, `{"event": {}} [`} {
		if _, err := ReadExport(strings.NewReader(bad)); err == nil {
			t.Errorf("ReadExport(%q) succeeded", bad)
		}
	}
}

func TestTamperKindsAllMapped(t *testing.T) {
	t.Parallel()
	for _, k := range []evidence.ProblemKind{evidence.Modified, evidence.Deleted, evidence.Inserted, evidence.Reordered, audit.BadSignature} {
		if tamperKinds[k] == agatev1.TamperKind_TAMPER_KIND_UNSPECIFIED {
			t.Errorf("problem kind %s has no TamperKind", k)
		}
	}
}

// evidenceServer is a real server on loopback over SQLite, with one decided job.
type evidenceServer struct {
	conn  *grpc.ClientConn
	audit *audit.Service
	hash  string
}

func startEvidenceServer(t *testing.T, withAudit bool) *evidenceServer {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "agate.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	cache, _ := snapshots.NewCache(4)
	svc, err := jobs.New(jobs.Config{Store: st, Tracker: snapshots.NewTracker(st, cache, nil), Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	p := jobs.Principal{ID: "owner", Roles: []string{"policy-admin"}}
	if _, err := svc.PutPolicy(ctx, p, []byte("version: v1\ndefault: allow\n"), true); err != nil {
		t.Fatal(err)
	}
	res, err := svc.Decide(ctx, jobs.Principal{ID: "svc"}, jobs.DecideRequest{JobID: "job-1", Topic: "a.b", Actor: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	key := ed25519.NewKeyFromSeed(make([]byte, 32))
	es := &evidenceServer{hash: res.Job.Hash}
	cfg := Config{Jobs: svc, Store: st, Auth: NewAuthenticator(must(LoadIdentities(writeTokens(t, `principals:
  - id: auditor
    roles: [audit]
    tokens_sha256: ["`+sha("tok-audit")+`"]
  - id: svc
    roles: [decide]
    tokens_sha256: ["`+sha("tok-decide")+`"]
`)))(t))}
	if withAudit {
		if es.audit, err = audit.New(audit.Config{Store: st, Key: key}); err != nil {
			t.Fatal(err)
		}
		cfg.Audit = es.audit
		sealer, err := audit.NewSealer(audit.SealerConfig{Store: st, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sealer.SealOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	if es.conn, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = es.conn.Close() })
	return es
}

func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func bearer(tok string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Errorf("err = %v, want %v", err, code)
	}
}

func TestEvidenceService(t *testing.T) {
	t.Parallel()
	es := startEvidenceServer(t, true)
	c := agatev1.NewEvidenceServiceClient(es.conn)
	ctx := bearer("tok-audit")

	got, err := c.GetEvidence(ctx, &agatev1.GetEvidenceRequest{JobId: "job-1"})
	if err != nil {
		t.Fatal(err)
	}
	s := got.GetSummary()
	if s.GetJobId() != "job-1" || s.GetDecision() != "allow" || s.GetStatus() != "allowed" || s.GetJobHash() != es.hash ||
		s.GetSubmittedBy() != "svc" || len(got.GetEvents()) != 1 || got.GetEvents()[0].GetKind() != "decision" {
		t.Errorf("GetEvidence = %v", got)
	}
	// The summary record starts with the reference event's ten keys, in its order.
	js, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	ref := []string{"job_id", "trace_id", "decision", "approval_required", "policy_snapshot", "job_hash",
		"approved_by", "approved_role", "approved_at", "status"}
	last := -1
	for _, k := range ref {
		i := strings.Index(string(js), `"`+k+`"`)
		if i < last {
			t.Errorf("summary JSON: %s out of the reference order: %s", k, js)
		}
		last = i
	}
	_, err = c.GetEvidence(ctx, &agatev1.GetEvidenceRequest{JobId: "nope"})
	wantCode(t, err, codes.NotFound)

	q, err := c.QueryEvidence(ctx, &agatev1.QueryEvidenceRequest{Kind: "decision"})
	if err != nil || q.GetHorizon() == 0 {
		t.Errorf("QueryEvidence = %v, %v", q, err)
	}
	_, err = c.QueryEvidence(ctx, &agatev1.QueryEvidenceRequest{PageToken: "###"})
	wantCode(t, err, codes.InvalidArgument)

	v, err := c.VerifyEvidence(ctx, &agatev1.VerifyEvidenceRequest{})
	if err != nil || !v.GetOk() || v.GetCheckpointsVerified() != 1 || v.GetChainsVerified() != 2 {
		t.Errorf("VerifyEvidence = %v, %v", v, err)
	}
	pk, err := c.GetPublicKey(ctx, &agatev1.GetPublicKeyRequest{})
	pub := es.audit.PublicKey()
	if err != nil || string(pk.GetPublicKey()) != string(pub) || pk.GetPublicKeyHex() != hex.EncodeToString(pub) ||
		pk.GetKeyId() != evidence.KeyID(pub) || pk.GetAlgorithm() != "ed25519" {
		t.Errorf("GetPublicKey = %v, %v", pk, err)
	}

	stream, err := c.ExportEvidence(ctx, &agatev1.ExportEvidenceRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var manifests, events, cps int
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case m.GetManifest() != nil:
			manifests++
		case m.GetEvent() != nil:
			events++
		default:
			cps++
		}
	}
	if manifests != 1 || events != 2 || cps != 1 {
		t.Errorf("export: %d manifests, %d events, %d checkpoints; want 1, 2, 1", manifests, events, cps)
	}

	m, err := c.ControlMatrix(ctx, &agatev1.ControlMatrixRequest{})
	if err != nil || len(m.GetControls()) != 4 || m.GetControls()[0].GetEventCount() != 2 ||
		m.GetControls()[0].GetEvidenceKinds()[0] != "decision" || len(m.GetControls()[0].GetSoc2()) == 0 {
		t.Errorf("ControlMatrix = %v, %v", m, err)
	}
	st, err := c.Stats(ctx, &agatev1.StatsRequest{})
	if err != nil || st.GetDecisions()["allow"] != 1 || st.GetStatuses()["allowed"] != 1 {
		t.Errorf("Stats = %v, %v", st, err)
	}
	sa, err := c.SampleAudit(ctx, &agatev1.SampleAuditRequest{})
	if err != nil || sa.GetSummary().GetPopulation() != 0 || sa.GetSummary().GetSeed() < 0 {
		t.Errorf("SampleAudit = %v, %v", sa, err)
	}
	cc, err := c.CheckCompleteness(ctx, &agatev1.CheckCompletenessRequest{Since: 5, Until: 1})
	wantCode(t, err, codes.InvalidArgument)
	if cc, err = c.CheckCompleteness(ctx, &agatev1.CheckCompletenessRequest{}); err != nil || cc.GetEventsChecked() != 2 || len(cc.GetFindings()) != 0 {
		t.Errorf("CheckCompleteness = %v, %v", cc, err)
	}

	// Auditors only.
	_, err = c.GetEvidence(bearer("tok-decide"), &agatev1.GetEvidenceRequest{JobId: "job-1"})
	wantCode(t, err, codes.PermissionDenied)
	_, err = c.Stats(context.Background(), &agatev1.StatsRequest{})
	wantCode(t, err, codes.Unauthenticated)
}

func TestEvidenceServiceWithoutAudit(t *testing.T) {
	t.Parallel()
	es := startEvidenceServer(t, false)
	_, err := agatev1.NewEvidenceServiceClient(es.conn).Stats(bearer("tok-audit"), &agatev1.StatsRequest{})
	wantCode(t, err, codes.Unimplemented)
}
