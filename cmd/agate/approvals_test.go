package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/agate-pdp/agate/canonical"
	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/server"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store/sqlite"
)

const cliPolicy = `version: v1
labels:
  env: {type: string, enum: [production, dev], required: true}
rules:
  - id: finance-prod
    when: {topic: finance.payment.execute, env: production}
    decision: require_human
    reason: production payments need a human
    approval: {roles: [finance-approver], quorum: 1, ttl: 24h}
`

// A payload whose memo holds a right-to-left override and an escape sequence, as an
// agent trying to make an approver misread it would send.
const cliPayload = `{"amount":1250.5,"currency":"EUR","memo":"pay ` + "\u202e" + `9999 \u001b[2J"}`

// cliServer is a real gRPC server, in process, over a fresh SQLite database.
type cliServer struct {
	addr string
	dec  agatev1.DecisionServiceClient
	dir  string
}

func startCLIServer(t *testing.T) *cliServer {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "agate.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	cache, _ := snapshots.NewCache(4)
	svc, err := jobs.New(jobs.Config{Store: st, Tracker: snapshots.NewTracker(st, cache, nil), Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	if _, err := svc.PutPolicy(ctx, jobs.Principal{ID: "owner", Roles: []string{"policy-admin"}}, []byte(cliPolicy), true); err != nil {
		t.Fatal(err)
	}
	var tokens strings.Builder
	tokens.WriteString("principals:\n")
	for id, role := range map[string]string{"agent-gateway": "decide", "alice@example.com": "finance-approver", "bob@example.com": "finance-approver"} {
		d := sha256.Sum256([]byte("tok-" + id))
		fmt.Fprintf(&tokens, "  - id: %q\n    roles: [%s]\n    tokens_sha256: [%q]\n", id, role, hex.EncodeToString(d[:]))
	}
	tf := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tf, []byte(tokens.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ids, err := server.LoadIdentities(tf)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Jobs: svc, Store: st, Auth: server.NewAuthenticator(ids)})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &cliServer{addr: lis.Addr().String(), dec: agatev1.NewDecisionServiceClient(conn), dir: dir}
}

func (s *cliServer) as(id string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer tok-"+id)
}

// decide submits a payment as the gateway and returns its id and hash.
func (s *cliServer) decide(t *testing.T, id string) string {
	t.Helper()
	res, err := s.dec.Decide(s.as("agent-gateway"), &agatev1.DecideRequest{Job: &agatev1.Job{JobId: id,
		Topic: "finance.payment.execute", Actor: "agent-7", Payload: []byte(cliPayload),
		Labels: map[string]*structpb.Value{"env": structpb.NewStringValue("production")}}})
	if err != nil {
		t.Fatal(err)
	}
	return res.GetJobHash()
}

func (s *cliServer) status(t *testing.T, id string) *agatev1.JobView {
	t.Helper()
	res, err := s.dec.GetJob(s.as("agent-gateway"), &agatev1.GetJobRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	return res.GetJob()
}

// tokenFile writes id's token to a file and returns its path.
func (s *cliServer) tokenFile(t *testing.T, id string) string {
	t.Helper()
	p := filepath.Join(s.dir, id+".token")
	if err := os.WriteFile(p, []byte("tok-"+id+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// cli runs `agate approvals args…` against s as id.
func (s *cliServer) cli(t *testing.T, id string, args ...string) (string, string, error) {
	t.Helper()
	full := append([]string{"approvals"}, args...)
	full = append(full, "--server", s.addr, "--plaintext", "--token-file", s.tokenFile(t, id))
	var out, errb bytes.Buffer
	err := run(context.Background(), full, &out, &errb)
	return out.String(), errb.String(), err
}

func TestApprovalsCLI(t *testing.T) {
	t.Parallel()
	s := startCLIServer(t)
	hash := s.decide(t, "pay-0001")
	s.decide(t, "pay-0002")

	out, _, err := s.cli(t, "alice@example.com", "list")
	if err != nil || !strings.Contains(out, "pay-0001") || !strings.Contains(out, "finance.payment.execute") ||
		!strings.Contains(out, "0/1") || !strings.Contains(out, "finance-prod") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, _, err = s.cli(t, "alice@example.com", "list", "--json")
	var listed struct {
		Pending []struct {
			Job struct {
				Job struct {
					JobID string `json:"job_id"`
				} `json:"job"`
				JobHash string `json:"job_hash"`
			} `json:"job"`
		} `json:"pending_approvals"`
	}
	if err != nil || json.Unmarshal([]byte(out), &listed) != nil || len(listed.Pending) != 2 ||
		listed.Pending[0].Job.Job.JobID != "pay-0001" || listed.Pending[0].Job.JobHash != hash {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	// Someone without a role on these jobs sees none.
	if out, _, err := s.cli(t, "agent-gateway", "list"); err != nil || !strings.Contains(out, "no pending approvals") {
		t.Errorf("list as the gateway: %v\n%s", err, out)
	}

	out, _, err = s.cli(t, "alice@example.com", "show", "pay-0001")
	if err != nil {
		t.Fatalf("show: %v", err)
	}
	for _, want := range []string{"pay-0001", "agent-7", "finance-prod", "production payments need a human",
		"0 of 1 (roles: finance-approver)", "time left", "23h59m", hash, `"amount": 1250.5`, `"currency": "EUR"`,
		`\u202e`, `\u001b`, "env=\"production\""} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	if strings.ContainsAny(out, "\u202e\x1b") {
		t.Errorf("show printed a raw control or bidi character:\n%q", out)
	}
	out, _, err = s.cli(t, "alice@example.com", "show", "pay-0001", "--json")
	var showed struct {
		Job struct {
			JobHash string `json:"job_hash"`
		} `json:"job"`
		TimeLeft int64 `json:"time_left_seconds"`
		Verified bool  `json:"job_hash_verified"`
	}
	if err != nil || json.Unmarshal([]byte(out), &showed) != nil || showed.Job.JobHash != hash || !showed.Verified ||
		showed.TimeLeft < 86000 {
		t.Fatalf("show --json: %v\n%s", err, out)
	}

	// A hash other than the one shown earlier: nothing is sent.
	other := "sha256:" + strings.Repeat("0", 64)
	if _, _, err := s.cli(t, "alice@example.com", "approve", "pay-0001", "--expect-hash", other); err == nil ||
		!strings.Contains(err.Error(), "nothing was sent") {
		t.Fatalf("approve with another expected hash: %v", err)
	}
	if st := s.status(t, "pay-0001").GetStatus(); st != agatev1.JobStatus_JOB_STATUS_PENDING_APPROVAL {
		t.Fatalf("after a refused approve the job is %s", st)
	}

	out, _, err = s.cli(t, "alice@example.com", "approve", "pay-0001", "--expect-hash", hash, "--reason", "matches PO-7")
	if err != nil || !strings.Contains(out, "approved (1 of 1); status approved") || !strings.Contains(out, hash) {
		t.Fatalf("approve: %v\n%s", err, out)
	}
	v := s.status(t, "pay-0001")
	if v.GetStatus() != agatev1.JobStatus_JOB_STATUS_APPROVED || v.GetApprovals()[0].GetApprovedBy() != "alice@example.com" ||
		v.GetApprovals()[0].GetReason() != "matches PO-7" {
		t.Fatalf("after approve: %v", v)
	}
	// Approving again is the server's already_approved, in JSON too.
	out, _, err = s.cli(t, "alice@example.com", "approve", "pay-0001", "--json")
	if err != nil || !strings.Contains(out, `"already_approved": true`) {
		t.Fatalf("approve again --json: %v\n%s", err, out)
	}

	if _, _, err := s.cli(t, "bob@example.com", "reject", "pay-0002"); err == nil || !strings.Contains(err.Error(), "--reason") {
		t.Fatalf("reject without a reason: %v", err)
	}
	out, _, err = s.cli(t, "bob@example.com", "reject", "pay-0002", "--reason", "duplicate invoice")
	if err != nil || !strings.Contains(out, "rejected; status rejected") {
		t.Fatalf("reject: %v\n%s", err, out)
	}
	// The server's refusal reaches the person with its reason.
	_, _, err = s.cli(t, "alice@example.com", "approve", "pay-0002")
	if err == nil || !strings.Contains(err.Error(), "ALREADY_REJECTED") {
		t.Fatalf("approve a rejected job: %v", err)
	}
}

func TestApprovalsCLIRefusals(t *testing.T) {
	t.Parallel()
	s := startCLIServer(t)
	s.decide(t, "pay-0001")
	bad := filepath.Join(s.dir, "bad.token")
	if err := os.WriteFile(bad, []byte("tok-wrong-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(s.dir, "empty.token")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"a token as a flag value", []string{"list", "--server", s.addr, "--plaintext", "--token", "tok-alice@example.com"}, "exit status 2"},
		{"no credentials", []string{"list", "--server", s.addr, "--plaintext"}, "AGATE_TOKEN"},
		{"an empty token file", []string{"list", "--server", s.addr, "--plaintext", "--token-file", empty}, "empty"},
		{"a wrong token", []string{"list", "--server", s.addr, "--plaintext", "--token-file", bad}, "Unauthenticated"},
		{"plaintext off loopback", []string{"list", "--server", "10.1.2.3:7070", "--plaintext", "--token-file", bad}, "not a loopback address"},
		{"no server", []string{"list", "--token-file", bad}, "--server"},
		{"no job", []string{"show", "--server", s.addr, "--plaintext", "--token-file", bad}, "exit status 2"},
		{"an unknown command", []string{"grant", "pay-0001"}, "exit status 2"},
		{"TLS to a plaintext server", []string{"list", "--server", s.addr, "--token-file", bad}, "Unavailable"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var out, errb bytes.Buffer
			err := run(context.Background(), append([]string{"approvals"}, c.args...), &out, &errb)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one naming %q\nstderr: %s", err, c.want, errb.String())
			}
			if strings.Contains(err.Error()+errb.String()+out.String(), "tok-") {
				t.Errorf("a token appears in the output: %v %s %s", err, errb.String(), out.String())
			}
		})
	}
}

// TestApprovalsCLIEnvironment: the server address and the token come from AGATE_SERVER
// and AGATE_TOKEN.
func TestApprovalsCLIEnvironment(t *testing.T) {
	s := startCLIServer(t)
	s.decide(t, "pay-0001")
	t.Setenv(envServer, s.addr)
	t.Setenv(envToken, "tok-alice@example.com")
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"approvals", "list", "--plaintext"}, &out, &errb); err != nil ||
		!strings.Contains(out.String(), "pay-0001") {
		t.Fatalf("list from the environment: %v\n%s%s", err, out.String(), errb.String())
	}
}

// lyingDecisions is a server that shows one payload under the hash of another, as a
// compromised server or a man in the middle would, and records what it is sent.
type lyingDecisions struct {
	agatev1.UnimplementedDecisionServiceServer
	view     *agatev1.JobView
	mu       sync.Mutex
	approved []string // job_hash of each Approve received
}

func (l *lyingDecisions) GetJob(context.Context, *agatev1.GetJobRequest) (*agatev1.GetJobResponse, error) {
	return &agatev1.GetJobResponse{Job: l.view}, nil
}

func (l *lyingDecisions) Approve(_ context.Context, r *agatev1.ApproveRequest) (*agatev1.ApproveResponse, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.approved = append(l.approved, r.GetJobHash())
	return &agatev1.ApproveResponse{JobId: r.GetJobId(), Status: agatev1.JobStatus_JOB_STATUS_APPROVED, Quorum: 1}, nil
}

// TestApprovalsCLIBindsWhatItShows: approve sends exactly the job_hash of the fetch it
// displayed, and refuses to show or approve a payload that does not hash to it.
func TestApprovalsCLIBindsWhatItShows(t *testing.T) {
	t.Parallel()
	labels := map[string]*structpb.Value{"env": structpb.NewStringValue("production")}
	honest, err := canonical.JobHash("finance.payment.execute", "agent-7", map[string]any{"env": "production"}, []byte(`{"amount":10}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		payload string
		ok      bool
	}{
		{"honest", `{"amount":10}`, true},
		{"a payload swapped under the hash", `{"amount":10000}`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			l := &lyingDecisions{view: &agatev1.JobView{Job: &agatev1.Job{JobId: "pay-1", Topic: "finance.payment.execute",
				Actor: "agent-7", Labels: labels, Payload: []byte(c.payload)}, JobHash: honest,
				Status: agatev1.JobStatus_JOB_STATUS_PENDING_APPROVAL, ExpiresAt: time.Now().Add(time.Hour).UnixMicro()}}
			g := grpc.NewServer()
			agatev1.RegisterDecisionServiceServer(g, l)
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = g.Serve(lis) }()
			t.Cleanup(g.Stop)
			tok := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(tok, []byte("tok-x"), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			err = run(context.Background(), []string{"approvals", "approve", "pay-1", "--server", lis.Addr().String(),
				"--plaintext", "--token-file", tok}, &out, &errb)
			l.mu.Lock()
			defer l.mu.Unlock()
			if c.ok {
				if err != nil || len(l.approved) != 1 || l.approved[0] != honest || !strings.Contains(out.String(), honest) {
					t.Fatalf("approve: %v, sent %v\n%s", err, l.approved, out.String())
				}
				return
			}
			if err == nil || len(l.approved) != 0 || strings.Contains(out.String(), "10000") {
				t.Fatalf("approved a payload that does not match its hash: %v, sent %v\n%s", err, l.approved, out.String())
			}
		})
	}
}
