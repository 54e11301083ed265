package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/agate-pdp/agate/audit"
	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store/sqlite"
)

// httpFixture serves one server on gRPC and on HTTP (the Connect protocol), with
// approvalPolicy active and principals svc and other (decide), alice (approver),
// disp (dispatch) and auditor (audit), whose tokens are "tok-" and their name.
type httpFixture struct {
	url  string           // the HTTP API's base URL
	conn *grpc.ClientConn // the same server over gRPC
	logs *syncBuffer      // the server's log lines
	srv  *Server
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startHTTPServer(t *testing.T, tune func(*Config)) *httpFixture {
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
	t.Cleanup(svc.Close)
	if _, err := svc.PutPolicy(ctx, jobs.Principal{ID: "owner", Roles: []string{RolePolicyAdmin}}, []byte(approvalPolicy), true); err != nil {
		t.Fatal(err)
	}
	aud, err := audit.New(audit.Config{Store: st, Key: ed25519.NewKeyFromSeed(make([]byte, 32))})
	if err != nil {
		t.Fatal(err)
	}
	tokens := "principals:\n"
	for _, p := range []struct{ id, role string }{{"svc", RoleDecide}, {"other", RoleDecide}, {"alice", "approver"},
		{"disp", RoleDispatch}, {"auditor", RoleAudit}} {
		tokens += "  - id: " + p.id + "\n    roles: [" + p.role + "]\n    tokens_sha256: [\"" + sha("tok-"+p.id) + "\"]\n"
	}
	logs := &syncBuffer{}
	cfg := Config{Jobs: svc, Audit: aud, Store: st, Auth: NewAuthenticator(must(LoadIdentities(writeTokens(t, tokens)))(t)),
		Log: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if tune != nil {
		tune(&cfg)
	}
	srv, addr := serve(t, cfg)
	h, err := srv.HTTPHandler()
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &httpFixture{url: hs.URL, conn: conn, logs: logs, srv: srv}
}

// httpAnswer is an HTTP API answer: its status, raw body, and the body decoded.
type httpAnswer struct {
	status int
	header http.Header
	raw    string
	body   map[string]any
}

// call POSTs body to the RPC as curl would: Content-Type application/json and, unless
// token is empty, a bearer token.
func call(t *testing.T, base, method, token, body string) httpAnswer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/"+method, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) httpAnswer {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := httpAnswer{status: res.StatusCode, header: res.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

// connectError is a Connect error body; each detail's debug is its JSON form.
type connectErr struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
		Debug struct {
			Reason   string            `json:"reason"`
			Domain   string            `json:"domain"`
			Metadata map[string]string `json:"metadata"`
		} `json:"debug"`
	} `json:"details"`
}

func (a httpAnswer) err(t *testing.T) connectErr {
	t.Helper()
	var e connectErr
	if err := json.Unmarshal([]byte(a.raw), &e); err != nil || e.Code == "" {
		t.Fatalf("status %d, body %q: not a Connect error", a.status, a.raw)
	}
	return e
}

// reason is the ErrorInfo's reason, from the detail's JSON form.
func (e connectErr) reason() string {
	for _, d := range e.Details {
		if d.Type == "google.rpc.ErrorInfo" {
			return d.Debug.Reason
		}
	}
	return ""
}

// TestHTTPAPILifecycle runs the README's walkthrough over HTTP: Decide, Approve,
// Publish and GetJob, each as the principal the walkthrough uses, with snake_case keys.
func TestHTTPAPILifecycle(t *testing.T) {
	t.Parallel()
	f := startHTTPServer(t, nil)
	d := call(t, f.url, "agate.v1.DecisionService/Decide", "tok-svc",
		`{"job": {"job_id": "pay-1", "topic": "pay.out", "actor": "agent-7", "labels": {"env": "production"},
		  "payload": "eyJhbW91bnQiOjEyNTAuNX0="}}`)
	if d.status != http.StatusOK || d.body["decision"] != "DECISION_REQUIRE_HUMAN" || d.body["status"] != "JOB_STATUS_PENDING_APPROVAL" {
		t.Fatalf("Decide: %d %s", d.status, d.raw)
	}
	if ct := d.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Decide: Content-Type %q", ct)
	}
	hash, _ := d.body["job_hash"].(string)
	if !strings.HasPrefix(hash, "sha256:") {
		t.Fatalf("Decide: job_hash %q in %s", hash, d.raw)
	}
	a := call(t, f.url, "agate.v1.DecisionService/Approve", "tok-alice",
		`{"job_id": "pay-1", "job_hash": "`+hash+`", "reason": "matches the order"}`)
	if a.status != http.StatusOK {
		t.Fatalf("Approve: %d %s", a.status, a.raw)
	}
	p := call(t, f.url, "agate.v1.DecisionService/Publish", "tok-disp", `{"job_id": "pay-1", "job_hash": "`+hash+`"}`)
	if p.status != http.StatusOK {
		t.Fatalf("Publish: %d %s", p.status, p.raw)
	}
	g := call(t, f.url, "agate.v1.DecisionService/GetJob", "tok-auditor", `{"job_id": "pay-1"}`)
	if g.status != http.StatusOK {
		t.Fatalf("GetJob: %d %s", g.status, g.raw)
	}
	job, _ := g.body["job"].(map[string]any)
	if g.body["status"] != "JOB_STATUS_APPROVED_AND_PUBLISHED" && job["status"] != "JOB_STATUS_APPROVED_AND_PUBLISHED" {
		t.Errorf("GetJob: not published: %s", g.raw)
	}
	// The keys are the proto's field names, as grpcurl prints them, never lowerCamelCase.
	for _, k := range []string{`"job_hash"`, `"policy_snapshot"`, `"job_id"`} {
		if !strings.Contains(g.raw, k) {
			t.Errorf("GetJob: no key %s in %s", k, g.raw)
		}
	}
	for _, raw := range []string{d.raw, a.raw, p.raw, g.raw} {
		for _, k := range []string{`"jobHash"`, `"jobId"`, `"policySnapshot"`} {
			if strings.Contains(raw, k) {
				t.Errorf("camelCase key %s in %s", k, raw)
			}
		}
	}
	// The same answer as grpcurl's, key for key: what the gRPC API returns, in
	// protobuf JSON without unpopulated fields.
	want, err := agatev1.NewDecisionServiceClient(f.conn).GetJob(bearer("tok-auditor"), &agatev1.GetJobRequest{JobId: "pay-1"})
	if err != nil {
		t.Fatal(err)
	}
	if keys(t, g.raw) != keys(t, mustJSON(t, want)) {
		t.Errorf("GetJob keys over HTTP %s, over gRPC %s", keys(t, g.raw), keys(t, mustJSON(t, want)))
	}
	// The interceptors ran: the logging one recorded each call with the principal that
	// authentication found.
	for _, want := range []string{`"method":"/agate.v1.DecisionService/Decide","code":"OK"`, `"principal":"alice"`, `"principal":"disp"`} {
		if !strings.Contains(f.logs.String(), want) {
			t.Errorf("no log line with %s in\n%s", want, f.logs)
		}
	}
}

// TestHTTPAPIRefusals: what is refused over gRPC is refused over HTTP, with the same
// code, message and ErrorInfo reason.
func TestHTTPAPIRefusals(t *testing.T) {
	t.Parallel()
	f := startHTTPServer(t, nil)
	d := call(t, f.url, "agate.v1.DecisionService/Decide", "tok-svc", `{"job": {"job_id": "pay-1", "topic": "pay.out", "actor": "agent-7"}}`)
	if d.status != http.StatusOK {
		t.Fatalf("Decide: %d %s", d.status, d.raw)
	}
	hash := d.body["job_hash"].(string)
	dc := agatev1.NewDecisionServiceClient(f.conn)
	ec := agatev1.NewEvidenceServiceClient(f.conn)
	for _, tc := range []struct {
		name, method, token, body string
		status                    int
		code, reason              string
		grpc                      func() error // the same call over gRPC, whose error must match
	}{
		{"no credentials", "agate.v1.DecisionService/GetJob", "", `{"job_id": "pay-1"}`,
			401, "unauthenticated", "UNAUTHENTICATED",
			func() error {
				_, err := dc.GetJob(context.Background(), &agatev1.GetJobRequest{JobId: "pay-1"})
				return err
			}},
		{"unknown token", "agate.v1.DecisionService/GetJob", "tok-nobody", `{"job_id": "pay-1"}`,
			401, "unauthenticated", "UNAUTHENTICATED",
			func() error {
				_, err := dc.GetJob(bearer("tok-nobody"), &agatev1.GetJobRequest{JobId: "pay-1"})
				return err
			}},
		{"no credentials, malformed body", "agate.v1.DecisionService/Decide", "", `{"job": `,
			401, "unauthenticated", "UNAUTHENTICATED", nil},
		{"role not allowed", "agate.v1.DecisionService/Decide", "tok-alice", `{"job": {"job_id": "x", "topic": "a.b", "actor": "a"}}`,
			403, "permission_denied", "ROLE_NOT_ALLOWED",
			func() error {
				_, err := dc.Decide(bearer("tok-alice"), &agatev1.DecideRequest{Job: &agatev1.Job{JobId: "x", Topic: "a.b", Actor: "a"}})
				return err
			}},
		{"no standing: another decider's job", "agate.v1.DecisionService/GetJob", "tok-other", `{"job_id": "pay-1"}`,
			404, "not_found", "NOT_FOUND",
			func() error {
				_, err := dc.GetJob(bearer("tok-other"), &agatev1.GetJobRequest{JobId: "pay-1"})
				return err
			}},
		{"no standing: approving another's job", "agate.v1.DecisionService/Approve", "tok-other",
			`{"job_id": "pay-1", "job_hash": "` + hash + `"}`, 404, "not_found", "NOT_FOUND",
			func() error {
				_, err := dc.Approve(bearer("tok-other"), &agatev1.ApproveRequest{JobId: "pay-1", JobHash: hash})
				return err
			}},
		{"no standing and no job look alike", "agate.v1.DecisionService/GetJob", "tok-other", `{"job_id": "pay-404"}`,
			404, "not_found", "NOT_FOUND",
			func() error {
				_, err := dc.GetJob(bearer("tok-other"), &agatev1.GetJobRequest{JobId: "pay-404"})
				return err
			}},
		{"evidence needs the audit role", "agate.v1.EvidenceService/GetEvidence", "tok-svc", `{"job_id": "pay-1"}`,
			403, "permission_denied", "ROLE_NOT_ALLOWED",
			func() error {
				_, err := ec.GetEvidence(bearer("tok-svc"), &agatev1.GetEvidenceRequest{JobId: "pay-1"})
				return err
			}},
		{"bad hash", "agate.v1.DecisionService/Publish", "tok-disp", `{"job_id": "pay-1", "job_hash": "sha256:00"}`,
			400, "invalid_argument", "INVALID_FIELD",
			func() error {
				_, err := dc.Publish(bearer("tok-disp"), &agatev1.PublishRequest{JobId: "pay-1", JobHash: "sha256:00"})
				return err
			}},
		// A misspelt field is an error naming it, not silently dropped.
		{"unknown field", "agate.v1.DecisionService/GetJob", "tok-svc", `{"job_idd": "pay-1"}`,
			400, "invalid_argument", "", nil},
		{"malformed JSON", "agate.v1.DecisionService/GetJob", "tok-svc", `{"job_id": `,
			400, "invalid_argument", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := call(t, f.url, tc.method, tc.token, tc.body)
			e := a.err(t)
			if a.status != tc.status || e.Code != tc.code || e.reason() != tc.reason {
				t.Fatalf("%d %s %q, want %d %s %q: %s", a.status, e.Code, e.reason(), tc.status, tc.code, tc.reason, a.raw)
			}
			if tc.name == "unknown field" && !strings.Contains(e.Message, "job_idd") {
				t.Errorf("message %q does not name the field", e.Message)
			}
			if tc.grpc == nil {
				return
			}
			st := status.Convert(tc.grpc())
			var reason string
			for _, d := range st.Details() {
				if info, ok := d.(*errdetails.ErrorInfo); ok {
					reason = info.GetReason()
				}
			}
			if st.Message() != e.Message || reason != e.reason() || strings.ToLower(st.Code().String()) != strings.ReplaceAll(e.Code, "_", "") {
				t.Errorf("over gRPC %v %q %q, over HTTP %s %q %q", st.Code(), st.Message(), reason, e.Code, e.Message, e.reason())
			}
		})
	}
	// Refusals of callers with standing are evidence, over HTTP as over gRPC.
	ev := call(t, f.url, "agate.v1.EvidenceService/GetEvidence", "tok-auditor", `{"job_id": "pay-1"}`)
	if ev.status != http.StatusOK {
		t.Fatalf("GetEvidence: %d %s", ev.status, ev.raw)
	}
	if !strings.Contains(ev.raw, `"kind":"decision"`) {
		t.Errorf("GetEvidence: %s", ev.raw)
	}
}

// TestHTTPAPIEvidenceAsAuditor: an auditor's evidence RPCs answer over HTTP.
func TestHTTPAPIEvidenceAsAuditor(t *testing.T) {
	t.Parallel()
	f := startHTTPServer(t, nil)
	if d := call(t, f.url, "agate.v1.DecisionService/Decide", "tok-svc", `{"job": {"job_id": "j", "topic": "a.b", "actor": "agent"}}`); d.status != 200 {
		t.Fatalf("Decide: %d %s", d.status, d.raw)
	}
	g := call(t, f.url, "agate.v1.EvidenceService/GetEvidence", "tok-auditor", `{"job_id": "j"}`)
	summary, _ := g.body["summary"].(map[string]any)
	if g.status != 200 || summary["job_id"] != "j" || summary["decision"] != "allow" || summary["submitted_by"] != "svc" {
		t.Errorf("GetEvidence: %d %s", g.status, g.raw)
	}
	s := call(t, f.url, "agate.v1.EvidenceService/Stats", "tok-auditor", `{}`)
	if s.status != 200 {
		t.Errorf("Stats: %d %s", s.status, s.raw)
	}
	k := call(t, f.url, "agate.v1.EvidenceService/GetPublicKey", "tok-auditor", `{}`)
	if k.status != 200 || k.body["algorithm"] != "ed25519" || k.body["public_key_hex"] == nil {
		t.Errorf("GetPublicKey: %d %s", k.status, k.raw)
	}
}

// TestHTTPAPITransport covers what the handler answers before transcoding: methods,
// content types, paths, sizes, and the time before the backend is attached.
func TestHTTPAPITransport(t *testing.T) {
	t.Parallel()
	f := startHTTPServer(t, func(c *Config) { c.MaxRecvBytes = 1 << 10 })
	post := func(path, ct string, body io.Reader, chunked bool) httpAnswer {
		req, _ := http.NewRequest(http.MethodPost, f.url+path, body)
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Authorization", "Bearer tok-svc")
		if chunked {
			req.ContentLength = -1
		}
		return do(t, req)
	}
	big := `{"job": {"job_id": "big", "topic": "a.b", "actor": "agent", "labels": {"k": "` + strings.Repeat("x", 2<<10) + `"}}}`
	for _, tc := range []struct {
		name    string
		path    string
		ct      string
		body    string
		chunked bool
		status  int
		code    string
	}{
		{"gRPC belongs on the gRPC port", "/agate.v1.DecisionService/GetJob", "application/grpc", "", false, 415, ""},
		{"gRPC-Web too", "/agate.v1.DecisionService/GetJob", "application/grpc-web+proto", "", false, 415, ""},
		{"form bodies", "/agate.v1.DecisionService/GetJob", "application/x-www-form-urlencoded", "job_id=x", false, 415, ""},
		{"unknown method", "/agate.v1.DecisionService/Nope", "application/json", "{}", false, 404, ""},
		{"health is not served here", "/grpc.health.v1.Health/Check", "application/json", "{}", false, 404, ""},
		{"reflection is not served here", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "application/json", "{}", false, 404, ""},
		{"a path with more segments", "/agate.v1.DecisionService/GetJob/x", "application/json", "{}", false, 404, ""},
		{"over the limit, with a length", "/agate.v1.DecisionService/Decide", "application/json", big, false, 429, "resource_exhausted"},
		{"over the limit, chunked", "/agate.v1.DecisionService/Decide", "application/json", big, true, 0, ""},
		{"charset is fine", "/agate.v1.DecisionService/GetJob", "application/json; charset=utf-8", `{"job_id": "x"}`, false, 404, "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := post(tc.path, tc.ct, strings.NewReader(tc.body), tc.chunked)
			if tc.status == 0 { // chunked: refused, whatever status the transcoder picks
				if a.status == http.StatusOK {
					t.Fatalf("a body over the limit was accepted: %s", a.raw)
				}
				return
			}
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.raw)
			}
			if tc.code != "" && a.err(t).Code != tc.code {
				t.Errorf("code %s, want %s", a.err(t).Code, tc.code)
			}
		})
	}
	req, _ := http.NewRequest(http.MethodGet, f.url+"/agate.v1.DecisionService/GetJob", nil)
	if a := do(t, req); a.status != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d %s", a.status, a.raw)
	}
	// Nothing the refused requests carried was stored.
	if g := call(t, f.url, "agate.v1.DecisionService/GetJob", "tok-svc", `{"job_id": "big"}`); g.status != http.StatusNotFound {
		t.Errorf("GetJob big: %d %s", g.status, g.raw)
	}
}

// TestHTTPAPIBeforeTheBackend: until the database has been reached, every call answers
// 503 UNAVAILABLE, as over gRPC, credentials or not.
func TestHTTPAPIBeforeTheBackend(t *testing.T) {
	t.Parallel()
	srv, err := New(Config{Auth: NewAuthenticator(must(LoadIdentities(writeTokens(t,
		"principals:\n  - id: svc\n    roles: [decide]\n    tokens_sha256: [\""+sha("tok-svc")+"\"]\n")))(t))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	h, err := srv.HTTPHandler()
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	for _, tok := range []string{"tok-svc", ""} {
		a := call(t, hs.URL, "agate.v1.DecisionService/Decide", tok, `{"job": {"job_id": "j", "topic": "a.b", "actor": "a"}}`)
		if a.status != http.StatusServiceUnavailable || a.err(t).Code != "unavailable" {
			t.Errorf("token %q: %d %s", tok, a.status, a.raw)
		}
	}
}

// TestHTTPAPIStreamsEndAtTheirMaximumDuration: a WatchJobs stream over HTTP ends at
// the server's maximum stream duration, as one over gRPC does, with DEADLINE_EXCEEDED.
func TestHTTPAPIStreamsEndAtTheirMaximumDuration(t *testing.T) {
	t.Parallel()
	f := startHTTPServer(t, func(c *Config) { c.Limits.MaxStreamTime = 300 * time.Millisecond })
	msg := []byte(`{}`)
	env := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(env[1:], uint32(len(msg)))
	req, _ := http.NewRequest(http.MethodPost, f.url+"/agate.v1.DecisionService/WatchJobs", bytes.NewReader(append(env, msg...)))
	req.Header.Set("Content-Type", "application/connect+json")
	req.Header.Set("Authorization", "Bearer tok-disp")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	a := do(t, req.WithContext(ctx))
	if ctx.Err() != nil {
		t.Fatal("the stream did not end at the server's maximum duration")
	}
	if a.status != http.StatusOK {
		t.Fatalf("after %s: %d %q", time.Since(start), a.status, a.raw)
	}
	// The stream ends as one on the gRPC port does.
	ws, err := agatev1.NewDecisionServiceClient(f.conn).WatchJobs(bearer("tok-disp"), &agatev1.WatchJobsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = ws.Recv()
	}
	wantEnd := `{}`
	if code := status.Code(err); code != codes.OK && !errors.Is(err, io.EOF) {
		wantEnd = `{"error":{"code":"` + connect.Code(code).String() + `"`
	}
	if end := a.raw[strings.LastIndex(a.raw, "\x02")+1:]; !strings.Contains(a.raw, "\x02") || !strings.Contains(end, wantEnd) {
		t.Errorf("the stream over HTTP ended %q; over gRPC with %v", a.raw, err)
	}
}

func keys(t *testing.T, raw string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	var out []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				out = append(out, prefix+k)
				walk(prefix+k+".", x)
			}
		case []any:
			for _, x := range v {
				walk(prefix+"[].", x)
			}
		}
	}
	walk("", m)
	slices.Sort(out)
	return strings.Join(slices.Compact(out), ",")
}

// mustJSON is m in protobuf JSON as grpcurl prints it: unpopulated fields left out.
func mustJSON(t *testing.T, m proto.Message) string {
	t.Helper()
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestHTTPCallsDrain: Shutdown waits for the HTTP API's unary calls in flight (grpc-go
// would cut them), up to its deadline, and refuses new ones from its start.
func TestHTTPCallsDrain(t *testing.T) {
	t.Parallel()
	var c httpCalls
	if !c.begin() {
		t.Fatal("begin refused before shutdown")
	}
	drained := make(chan struct{})
	go func() { c.drain(context.Background()); close(drained) }()
	select {
	case <-drained:
		t.Fatal("drain returned with a call in flight")
	case <-time.After(50 * time.Millisecond):
	}
	c.wg.Done()
	<-drained
	if c.begin() {
		t.Error("a call began after drain")
	}
	var stuck httpCalls
	stuck.begin()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	stuck.drain(ctx) // returns at the deadline
}

// TestHTTPAPIAfterShutdown: once the server stops, HTTP calls answer 503 UNAVAILABLE.
func TestHTTPAPIAfterShutdown(t *testing.T) {
	t.Parallel()
	f := startHTTPServer(t, nil)
	f.srv.Shutdown(context.Background())
	a := call(t, f.url, "agate.v1.DecisionService/GetJob", "tok-svc", `{"job_id": "x"}`)
	if a.status != http.StatusServiceUnavailable || a.err(t).Code != "unavailable" {
		t.Errorf("%d %s", a.status, a.raw)
	}
}

// TestHTTPAPIClientCertificates: over HTTPS, a client certificate authenticates an HTTP
// call as it does a gRPC one. The handler's own check reads the connection's TLS state,
// so a call with the certificate alone succeeds only if the interceptors, which
// authenticate again from the transcoded call, see that state too.
func TestHTTPAPIClientCertificates(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	cfg := testConfig(t, authTokens)
	cfg.TLS = ca.serverTLS(t, false)
	srv, _ := serve(t, cfg)
	h, err := srv.HTTPHandler()
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(h)
	hs.TLS = cfg.TLS.Clone()
	hs.EnableHTTP2 = true
	hs.StartTLS()
	t.Cleanup(hs.Close)
	for _, tc := range []struct {
		name, cert, token string
		status            int
	}{
		{"certificate alone", "spiffe://example.org/auditor", "", http.StatusOK},
		{"certificate and its principal's token", "spiffe://example.org/auditor", "tok-audit", http.StatusOK},
		{"a stolen token over another's certificate", "spiffe://example.org/auditor", "tok-dispatch", http.StatusUnauthorized},
		{"an unmapped certificate alone", "spiffe://example.org/somebody", "", http.StatusUnauthorized},
		{"the dispatcher's certificate: no role for snapshots", "Dispatcher.Internal", "", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tlsCfg := &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{ca.issue(t, false, tc.cert)}}
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true}}
			req, _ := http.NewRequest(http.MethodPost, hs.URL+"/agate.v1.PolicyService/ListSnapshots", strings.NewReader(`{}`))
			req.Header.Set("Content-Type", "application/json")
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tc.status {
				t.Errorf("%d %s, want %d", res.StatusCode, body, tc.status)
			}
		})
	}
}
