package main

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
)

// fakeService answers the three pipeline calls the way Agate does for a job
// that needs one approval, and remembers who called what.
type fakeService struct {
	agatev1.UnimplementedDecisionServiceServer
	failApprove bool
	entered     chan struct{} // when set, Decide signals here and then waits for gate
	gate        chan struct{}

	mu     sync.Mutex
	tokens map[string]map[string]bool // method -> tokens seen
	hashes map[string]string          // job id -> hash given at Decide
}

func (f *fakeService) saw(ctx context.Context, method string) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, v := range md.Get("authorization") {
		f.tokens[method][v] = true
	}
}

func (f *fakeService) Decide(ctx context.Context, r *agatev1.DecideRequest) (*agatev1.DecideResponse, error) {
	f.saw(ctx, "Decide")
	if f.gate != nil {
		f.entered <- struct{}{}
		<-f.gate
	}
	if r.GetJob().GetLabels()["env"].GetStringValue() != "production" {
		return nil, status.Error(codes.InvalidArgument, "env")
	}
	h := "sha256:" + r.GetJob().GetJobId()
	f.mu.Lock()
	f.hashes[r.GetJob().GetJobId()] = h
	f.mu.Unlock()
	return &agatev1.DecideResponse{JobId: r.GetJob().GetJobId(), JobHash: h,
		Decision: agatev1.Decision_DECISION_REQUIRE_HUMAN, Status: agatev1.JobStatus_JOB_STATUS_PENDING_APPROVAL}, nil
}

func (f *fakeService) check(id, hash string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hashes[id] != hash {
		return status.Error(codes.Aborted, "JOB_HASH_MISMATCH")
	}
	return nil
}

func (f *fakeService) Approve(ctx context.Context, r *agatev1.ApproveRequest) (*agatev1.ApproveResponse, error) {
	f.saw(ctx, "Approve")
	if f.failApprove {
		return nil, status.Error(codes.PermissionDenied, "SELF_APPROVAL")
	}
	if err := f.check(r.GetJobId(), r.GetJobHash()); err != nil {
		return nil, err
	}
	return &agatev1.ApproveResponse{JobId: r.GetJobId(), Status: agatev1.JobStatus_JOB_STATUS_APPROVED}, nil
}

func (f *fakeService) Publish(ctx context.Context, r *agatev1.PublishRequest) (*agatev1.PublishResponse, error) {
	f.saw(ctx, "Publish")
	if err := f.check(r.GetJobId(), r.GetJobHash()); err != nil {
		return nil, err
	}
	return &agatev1.PublishResponse{Job: &agatev1.JobView{Status: agatev1.JobStatus_JOB_STATUS_APPROVED_AND_PUBLISHED}}, nil
}

func startFake(t *testing.T, f *fakeService, n int) []agatev1.DecisionServiceClient {
	t.Helper()
	f.tokens = map[string]map[string]bool{"Decide": {}, "Approve": {}, "Publish": {}}
	f.hashes = map[string]string{}
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	agatev1.RegisterDecisionServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	clients := make([]agatev1.DecisionServiceClient, n)
	for i := range clients {
		conn, err := grpc.NewClient("passthrough:///bufnet",
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		clients[i] = agatev1.NewDecisionServiceClient(conn)
	}
	return clients
}

func testConfig() config {
	return config{Clients: 4, Duration: time.Minute, MaxJobs: 40, MaxErrors: 5, CallTimeout: 10 * time.Second,
		Prefix: "t", IDs: "random", DecideToken: "dev-decide", ApproveToken: "dev-alice", PublishToken: "dev-dispatch"}
}

func TestDriveTakesEveryJobThroughThePipeline(t *testing.T) {
	t.Parallel()
	f := &fakeService{}
	cfg := testConfig()
	res := drive(context.Background(), cfg, startFake(t, f, cfg.Clients))

	if res.Jobs.OK != cfg.MaxJobs || res.Jobs.Errors != 0 {
		t.Fatalf("jobs ok %d, errors %d (%v); want %d, 0", res.Jobs.OK, res.Jobs.Errors, res.ErrorsByKind, cfg.MaxJobs)
	}
	for name, s := range map[string]int64{"Decide": res.Decide.OK, "Approve": res.Approve.OK, "Publish": res.Publish.OK} {
		if s != cfg.MaxJobs {
			t.Errorf("%s ok = %d; want %d", name, s, cfg.MaxJobs)
		}
	}
	if res.Jobs.P99 < res.Jobs.P50 || res.Jobs.PerSec <= 0 {
		t.Errorf("implausible summary %+v", res.Jobs)
	}
	want := map[string]string{"Decide": "Bearer dev-decide", "Approve": "Bearer dev-alice", "Publish": "Bearer dev-dispatch"}
	for method, tok := range want {
		if got := f.tokens[method]; len(got) != 1 || !got[tok] {
			t.Errorf("%s saw tokens %v; want only %q", method, got, tok)
		}
	}
	if len(f.hashes) != int(cfg.MaxJobs) {
		t.Errorf("%d distinct job ids decided; want %d", len(f.hashes), cfg.MaxJobs)
	}
}

func TestDriveStopsAfterMaxErrors(t *testing.T) {
	t.Parallel()
	f := &fakeService{failApprove: true}
	cfg := testConfig()
	cfg.Clients = 1 // one client makes the count exact
	res := drive(context.Background(), cfg, startFake(t, f, cfg.Clients))

	if res.Jobs.OK != 0 || res.Jobs.Errors != cfg.MaxErrors {
		t.Fatalf("jobs ok %d, errors %d; want 0, %d", res.Jobs.OK, res.Jobs.Errors, cfg.MaxErrors)
	}
	if res.Approve.Errors != cfg.MaxErrors || res.ErrorsByKind["Approve: PermissionDenied"] != cfg.MaxErrors {
		t.Errorf("approve errors %d, by kind %v; want %d PermissionDenied", res.Approve.Errors, res.ErrorsByKind, cfg.MaxErrors)
	}
	for k := range res.ErrorsByKind {
		if !strings.HasPrefix(k, "Approve: ") {
			t.Errorf("unexpected error kind %q", k)
		}
	}
}

func TestDriveStopsWhenItsContextEnds(t *testing.T) {
	t.Parallel()
	f := &fakeService{}
	cfg := testConfig()
	cfg.MaxJobs = 1 << 40
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // an ended context stops the run before any job starts
	res := drive(ctx, cfg, startFake(t, f, cfg.Clients))
	if res.Jobs.OK != 0 || res.Jobs.Errors != 0 {
		t.Errorf("jobs ok %d, errors %d after cancellation; want 0, 0", res.Jobs.OK, res.Jobs.Errors)
	}
}

func TestJobIDs(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	a, b := jobID(cfg, 1), jobID(cfg, 1)
	if a == b || !strings.HasPrefix(a, "t-") || len(a) < 20 {
		t.Errorf("random ids %q, %q: want distinct, prefixed, long", a, b)
	}
	cfg.IDs = "sequential"
	if a, b := jobID(cfg, 9), jobID(cfg, 10); a != "t-000000000009" || a >= b {
		t.Errorf("sequential ids %q, %q: want zero-padded and in order", a, b)
	}
}

func TestDriveLetsJobsUnderWayFinish(t *testing.T) {
	t.Parallel()
	f := &fakeService{entered: make(chan struct{}), gate: make(chan struct{})}
	cfg := testConfig()
	clients := startFake(t, f, cfg.Clients)
	calls, abort := context.WithCancel(context.Background())
	defer abort()
	starting, stop := context.WithCancel(calls)
	done := make(chan result)
	go func() { done <- driveUntil(calls, abort, starting, cfg, clients) }()
	for range cfg.Clients { // every client is inside its first Decide…
		<-f.entered
	}
	stop() // …when the run's time is up
	close(f.gate)
	res := <-done
	if res.Jobs.OK != int64(cfg.Clients) || res.Jobs.Errors != 0 {
		t.Errorf("jobs ok %d, errors %d (%v); want the %d jobs under way to finish", res.Jobs.OK, res.Jobs.Errors,
			res.ErrorsByKind, cfg.Clients)
	}
}

func TestParseFlagsRefusesBadValues(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-clients", "0"}, {"-duration", "0s"}, {"-max-jobs", "-1"}, {"-ids", "uuid"}} {
		if _, err := parseFlags(args, &strings.Builder{}); err == nil {
			t.Errorf("parseFlags(%v) accepted", args)
		}
	}
	if c, err := parseFlags([]string{"-clients", "3"}, &strings.Builder{}); err != nil || c.Clients != 3 {
		t.Errorf("parseFlags(-clients 3) = %+v, %v", c, err)
	}
}
