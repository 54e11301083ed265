package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/jobs"
)

const decideTokens = `principals:
  - id: svc
    roles: [decide]
    tokens_sha256: ["` + "%s" + `"]
`

// Over gRPC, a job's trace_id is the caller's traceparent's trace id with tracing off
// (the no-op provider: only the trace context is read) and on (a server span per call,
// the child of the caller's), and a fresh id without one.
func TestTraceContextOverGRPC(t *testing.T) {
	t.Parallel()
	const traceHex = "4bf92f3577b34da6a3ce929d0e0e4736"
	rec := tracetest.NewSpanRecorder()
	for name, tp := range map[string]*sdktrace.TracerProvider{"off": nil, "on": sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			addr := startServer(t, strings.Replace(decideTokens, "%s", sha("tok-decide"), 1), func(c *Config) {
				if tp != nil {
					c.Tracer = tp
				}
			})
			dec := agatev1.NewDecisionServiceClient(dial(t, addr, nil))
			ctx := metadata.AppendToOutgoingContext(bearer("tok-decide"),
				"traceparent", "00-"+traceHex+"-00f067aa0ba902b7-01", "baggage", "k=v")
			d, err := dec.Decide(ctx, &agatev1.DecideRequest{Job: &agatev1.Job{JobId: "traced-" + name, Topic: "a.b", Actor: "agent"}})
			if err != nil {
				t.Fatal(err)
			}
			if d.GetTraceId() != traceHex {
				t.Errorf("trace_id = %q, want the traceparent's %q", d.GetTraceId(), traceHex)
			}
			d, err = dec.Decide(bearer("tok-decide"), &agatev1.DecideRequest{Job: &agatev1.Job{JobId: "untraced-" + name, Topic: "a.b", Actor: "agent"}})
			if err != nil {
				t.Fatal(err)
			}
			if len(d.GetTraceId()) != 32 || d.GetTraceId() == traceHex {
				t.Errorf("trace_id without traceparent = %q, want a fresh id", d.GetTraceId())
			}
			if tp == nil {
				return
			}
			found := false
			for _, s := range rec.Ended() {
				if s.Name() == "agate.v1.DecisionService/Decide" && s.Parent().TraceID().String() == traceHex {
					found = true
				}
			}
			if !found {
				t.Error("no server span of Decide as the child of the caller's trace")
			}
		})
	}
}

// The request metrics count each call under its method and code, through the series
// table as through the vectors, and create only the series that happened.
func TestRPCMetricsSeries(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	addr := startServer(t, strings.Replace(decideTokens, "%s", sha("tok-decide"), 1), func(c *Config) { c.Metrics = m })
	dec := agatev1.NewDecisionServiceClient(dial(t, addr, nil))
	for i := range 3 {
		if _, err := dec.Decide(bearer("tok-decide"), &agatev1.DecideRequest{Job: &agatev1.Job{JobId: "m-" + string(rune('a'+i)), Topic: "a.b", Actor: "agent"}}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = dec.Decide(bearer("nobody"), &agatev1.DecideRequest{Job: &agatev1.Job{JobId: "m-x", Topic: "a.b", Actor: "agent"}})
	wantCode(t, err, codes.Unauthenticated)
	const decide = "/agate.v1.DecisionService/Decide"
	// The server counts after answering; wait for the last call's count.
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(m.rpcs.WithLabelValues(decide, "Unauthenticated")) != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := testutil.ToFloat64(m.rpcs.WithLabelValues(decide, "OK")); got != 3 {
		t.Errorf("OK Decides counted %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.rpcs.WithLabelValues(decide, "Unauthenticated")); got != 1 {
		t.Errorf("refused Decides counted %v, want 1", got)
	}
	if n := testutil.CollectAndCount(m.latency); n != 2 {
		t.Errorf("%d latency series, want 2 (OK and Unauthenticated)", n)
	}

	// A method or a code outside the table is counted all the same.
	srv, err := New(Config{Auth: NewAuthenticator(&Identities{}), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	srv.rpcSeries("/x.Unknown/Call", codes.OK).count.Inc()
	srv.rpcSeries(decide, codes.Code(99)).count.Inc()
	if got := testutil.ToFloat64(m.rpcs.WithLabelValues("/x.Unknown/Call", "OK")); got != 1 {
		t.Errorf("unknown method counted %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.rpcs.WithLabelValues(decide, codes.Code(99).String())); got != 1 {
		t.Errorf("unknown code counted %v, want 1", got)
	}
}

// The principal a handler sees is the authenticated one, carried in the call's one
// context value; a context without one has no principal.
func TestPrincipalInCallInfo(t *testing.T) {
	t.Parallel()
	if p := principalFrom(context.Background()); p.ID != "" {
		t.Errorf("principal of a bare context = %q", p.ID)
	}
	ci := &callInfo{}
	ctx := context.WithValue(context.Background(), callInfoKey{}, ci)
	p := jobs.Principal{ID: "svc", Roles: []string{RoleDecide}, Auth: AuthToken}
	if got := principalFrom(withPrincipal(ctx, p)); got.ID != "svc" || ci.principal.ID != "svc" {
		t.Errorf("principal = %q, logged as %q; want svc for both", got.ID, ci.principal.ID)
	}
	if got := principalFrom(withPrincipal(context.Background(), p)); got.ID != "svc" {
		t.Errorf("principal without a callInfo = %q, want svc", got.ID)
	}
}
