package server

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

const limitTokens = "principals:\n  - id: a\n    roles: [audit]\n    tokens_sha256: [\"" + "0000000000000000000000000000000000000000000000000000000000000000" + "\"]\n"

// A health Watch, which would otherwise stream for as long as the client likes, is cut
// at its maximum duration with DEADLINE_EXCEEDED; so is a reflection stream whose
// handler sits waiting for a request, which a deadline on the handler's context alone
// would not end.
func TestPublicStreamsEndAtTheirMaximumDuration(t *testing.T) {
	t.Parallel()
	const limit = 300 * time.Millisecond
	addr := startServer(t, limitTokens, func(c *Config) {
		c.Limits = StreamLimits{MaxPublicStreamTime: limit, MaxStreamTime: time.Hour}
	})
	conn := dial(t, addr, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	start := time.Now()
	w, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatalf("first health update: %v", err)
	}
	_, err = w.Recv()
	if status.Code(err) != codes.DeadlineExceeded || time.Since(start) < limit {
		t.Fatalf("watch ended after %v with %v, want DEADLINE_EXCEEDED after %v", time.Since(start), err, limit)
	}

	start = time.Now()
	r, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Recv() // sends nothing: the handler waits in Recv
	if status.Code(err) != codes.DeadlineExceeded || time.Since(start) < limit {
		t.Fatalf("reflection ended after %v with %v, want DEADLINE_EXCEEDED after %v", time.Since(start), err, limit)
	}
}

// The unauthenticated streams beyond MaxPublicStreams are refused RESOURCE_EXHAUSTED,
// and a slot frees when a stream ends.
func TestPublicStreamsAreCounted(t *testing.T) {
	t.Parallel()
	const max = 3
	addr := startServer(t, limitTokens, func(c *Config) { c.Limits = StreamLimits{MaxPublicStreams: max} })
	health := healthpb.NewHealthClient(dial(t, addr, nil))
	watch := func(ctx context.Context) error {
		w, err := health.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return err
		}
		_, err = w.Recv()
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cancels := make([]context.CancelFunc, max)
	for i := range max {
		var sctx context.Context
		sctx, cancels[i] = context.WithCancel(ctx)
		defer cancels[i]()
		if err := watch(sctx); err != nil {
			t.Fatalf("watch %d: %v", i+1, err)
		}
	}
	if err := watch(ctx); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("watch %d: %v, want RESOURCE_EXHAUSTED", max+1, err)
	}
	// Unary health checks are not streams and stay available.
	if _, err := health.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health check while streams are full: %v", err)
	}
	cancels[0]()
	for {
		err := watch(ctx)
		if err == nil {
			break
		}
		if status.Code(err) != codes.ResourceExhausted || ctx.Err() != nil {
			t.Fatalf("after one stream ended: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // the server sees the cancellation shortly
	}
}

func TestStreamTapDeadlines(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, limitTokens)
	cfg.Limits = StreamLimits{MaxStreamTime: time.Hour, MaxPublicStreamTime: time.Minute}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for method, want := range map[string]time.Duration{
		"/agate.v1.EvidenceService/ExportEvidence":                       time.Hour,
		"/grpc.health.v1.Health/Watch":                                   time.Minute,
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      time.Minute,
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": time.Minute,
		"/grpc.health.v1.Health/Check":                                   0,
		"/agate.v1.DecisionService/Decide":                               0,
	} {
		ctx, err := s.streamTap(context.Background(), &tap.Info{FullMethodName: method})
		if err != nil {
			t.Fatal(err)
		}
		dl, ok := ctx.Deadline()
		switch {
		case want == 0 && ok:
			t.Errorf("%s: unary call got a stream deadline", method)
		case want != 0 && (!ok || time.Until(dl) > want || time.Until(dl) < want-time.Minute/2):
			t.Errorf("%s: deadline in %v, want %v", method, time.Until(dl), want)
		}
		if c, ok := ctx.Value(streamCancelKey{}).(context.CancelFunc); ok {
			c()
		}
	}
}
