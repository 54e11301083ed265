package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store/sqlite"
)

// BenchmarkGRPC measures one call at a time through the whole server: a real
// grpc.Server built by New, as `agate serve` builds it (metrics registered, a JSON
// logger at info, the OpenTelemetry stats handler with no exporter, the full interceptor
// chain, token authentication), over loopback TCP, with the example policy and the
// requests of `make bench-load`. Decide writes to SQLite with group commit as serve
// configures it. The figures include the client's work in the same process; use
// -benchmem for allocations per call, -cpuprofile for where the time goes, and
// valgrind --tool=callgrind on the test binary with two -test.benchtime=Nx values for
// instructions per call that do not depend on the machine's load.
func BenchmarkGRPC(b *testing.B) {
	b.Run("Evaluate", func(b *testing.B) {
		c, ctx := benchClient(b)
		req := &agatev1.EvaluateRequest{Job: &agatev1.Job{JobId: "eval-1", Topic: "customer.data.export", Actor: "agent-7",
			Labels: benchLabels(b, map[string]any{"env": "production", "destination": "external", "scope_validated": false})}}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			resp, err := agatev1.NewPolicyServiceClient(c).Evaluate(ctx, req)
			if err != nil {
				b.Fatal(err)
			}
			if resp.GetDecision() != agatev1.Decision_DECISION_DENY {
				b.Fatalf("decision %v, want deny", resp.GetDecision())
			}
		}
	})
	b.Run("Decide", func(b *testing.B) {
		c, ctx := benchClient(b)
		job := &agatev1.Job{Topic: "finance.payment.execute", Actor: "agent-7",
			Labels:  benchLabels(b, map[string]any{"env": "staging"}),
			Payload: []byte(`{"amount":1250.5,"currency":"EUR","invoice":"INV-1001"}`)}
		prefix := fmt.Sprintf("bench-%d-", time.Now().UnixNano())
		b.ReportAllocs()
		b.ResetTimer()
		i := 0
		for b.Loop() {
			i++
			job.JobId = prefix + fmt.Sprint(i)
			resp, err := agatev1.NewDecisionServiceClient(c).Decide(ctx, &agatev1.DecideRequest{Job: job})
			if err != nil {
				b.Fatal(err)
			}
			if resp.GetStatus() != agatev1.JobStatus_JOB_STATUS_ALLOWED {
				b.Fatalf("status %v, want allowed", resp.GetStatus())
			}
		}
	})
}

// benchClient starts a server as serve does, over a fresh SQLite database with the
// example policy and tokens, and returns a connection to it and a context carrying the
// decide principal's token.
func benchClient(b *testing.B) (*grpc.ClientConn, context.Context) {
	b.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "agate.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	cache, _ := snapshots.NewCache(4)
	svc, err := jobs.New(jobs.Config{Store: st, Tracker: snapshots.NewTracker(st, cache, nil), Cache: cache,
		Batch: jobs.Batch{Window: time.Millisecond, MaxRows: 64, InFlight: 1}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(svc.Close)
	policy, err := os.ReadFile("../examples/policy.yaml")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := svc.PutPolicy(ctx, jobs.Principal{ID: "owner", Roles: []string{RolePolicyAdmin}}, policy, true); err != nil {
		b.Fatal(err)
	}
	ids, err := LoadIdentities("../examples/tokens.yaml")
	if err != nil {
		b.Fatal(err)
	}
	metrics, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := New(Config{Jobs: svc, Store: st, Auth: NewAuthenticator(ids, AuthLog(log)), Metrics: metrics, Log: log})
	if err != nil {
		b.Fatal(err)
	}
	srv.setServing(true)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	b.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	return conn, metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer dev-decide")
}

func benchLabels(b *testing.B, in map[string]any) map[string]*structpb.Value {
	b.Helper()
	out := make(map[string]*structpb.Value, len(in))
	for k, v := range in {
		pv, err := structpb.NewValue(v)
		if err != nil {
			b.Fatal(err)
		}
		out[k] = pv
	}
	return out
}
