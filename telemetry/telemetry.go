// Package telemetry owns Agate's OpenTelemetry tracing: a tracer provider configured only
// through the standard OTEL_* environment variables, off unless they ask for it, and the
// W3C trace-context propagator that carries a caller's trace into Agate whether tracing
// is on or not.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Propagator reads and writes W3C traceparent/tracestate and baggage headers.
var Propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(
	propagation.TraceContext{}, propagation.Baggage{})

// Tracing is a tracer provider and how to flush it.
type Tracing struct {
	Provider trace.TracerProvider
	Enabled  bool
	shutdown func(context.Context) error
}

// Shutdown flushes buffered spans; a no-op when tracing is off.
func (t Tracing) Shutdown(ctx context.Context) error {
	if t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// FromEnv builds tracing from the OTEL_* variables. Tracing is on when
// OTEL_TRACES_EXPORTER is "otlp", or when it is unset and OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT names a collector; it is off when OTEL_SDK_DISABLED
// is true, OTEL_TRACES_EXPORTER is "none", or nothing is set. The
// exporters read their own OTEL_EXPORTER_OTLP_* variables (endpoint, headers, TLS,
// timeout); the SDK reads OTEL_TRACES_SAMPLER*, OTEL_BSP_*, OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES.
func FromEnv(ctx context.Context, version string) (Tracing, error) {
	off := Tracing{Provider: noop.NewTracerProvider()}
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return off, nil
	}
	switch exp := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); exp {
	case "none":
		return off, nil
	case "":
		if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
			return off, nil
		}
	case "otlp":
	default:
		return off, fmt.Errorf("OTEL_TRACES_EXPORTER: %q is not supported (use otlp or none)", exp)
	}
	exporter, err := otlpExporter(ctx)
	if err != nil {
		return off, err
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("agate"), semconv.ServiceVersion(version)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
		resource.WithHost(), resource.WithProcessRuntimeVersion())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return off, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	return Tracing{Provider: tp, Enabled: true, shutdown: tp.Shutdown}, nil
}

// otlpExporter picks OTLP over gRPC or HTTP by OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else
// OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf as the specification's default.
func otlpExporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	proto := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch proto {
	case "", "http/protobuf":
		return otlptracehttp.New(ctx)
	case "grpc":
		return otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL: %q is not supported (use grpc or http/protobuf)", proto)
	}
}
