package server

import (
	"context"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"

	"github.com/agate-pdp/agate/telemetry"
)

// traceHandler is the stats handler of every call. With spans exported it is
// OpenTelemetry's gRPC instrumentation: a server span per call, following the RPC
// semantic conventions, as the child of the caller's W3C trace context; health checks
// are left out, as balancers call them every few seconds. Without (tp is the no-op
// provider) a call's context gets what that instrumentation would have given it, the
// caller's trace context, and nothing is spent on spans, attributes and metadata copies
// that no one receives.
func traceHandler(tp trace.TracerProvider) stats.Handler {
	if _, off := tp.(noop.TracerProvider); off {
		return traceContext{}
	}
	return otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithPropagators(telemetry.Propagator),
		otelgrpc.WithFilter(filters.Not(filters.HealthCheck())))
}

// traceContext continues the caller's W3C trace context (traceparent, tracestate,
// baggage) in each call's context, so a job's trace_id follows the caller's trace
// whether tracing is on or not.
type traceContext struct{}

func (traceContext) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return telemetry.Propagator.Extract(ctx, incomingCarrier{ctx})
}

func (traceContext) HandleRPC(context.Context, stats.RPCStats) {}

func (traceContext) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (traceContext) HandleConn(context.Context, stats.ConnStats) {}

// incomingCarrier reads a call's incoming metadata as otelgrpc's carrier does (the first
// value of a key), copying only the keys asked for.
type incomingCarrier struct{ ctx context.Context }

func (c incomingCarrier) Get(key string) string {
	if v := metadata.ValueFromIncomingContext(c.ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (incomingCarrier) Set(string, string) {}

func (c incomingCarrier) Keys() []string {
	md, _ := metadata.FromIncomingContext(c.ctx)
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	return keys
}
