package e2e

import (
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
)

// otlpReceiver is an OTLP/HTTP trace endpoint that keeps every span it is sent.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []*tracepb.Span
}

func newOTLPReceiver(t *testing.T) (*otlpReceiver, string) {
	t.Helper()
	r := &otlpReceiver{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		var msg coltracepb.ExportTraceServiceRequest
		if err != nil || req.URL.Path != "/v1/traces" || proto.Unmarshal(body, &msg) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range msg.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				r.spans = append(r.spans, ss.GetSpans()...)
			}
		}
		r.mu.Unlock()
		b, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(b)
	})}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	return r, "http://" + lis.Addr().String()
}

// find returns the first span of trace named name whose parent is parent (any parent
// when nil), or nil.
func (r *otlpReceiver) find(trace []byte, name string, parent []byte) *tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.spans {
		if string(s.GetTraceId()) == string(trace) && s.GetName() == name &&
			(parent == nil || string(s.GetParentSpanId()) == string(parent)) {
			return s
		}
	}
	return nil
}

func attr(s *tracepb.Span, key string) *commonpb.AnyValue {
	for _, kv := range s.GetAttributes() {
		if kv.GetKey() == key {
			return kv.GetValue()
		}
	}
	return nil
}

// With OTEL_EXPORTER_OTLP_ENDPOINT set, each call is a server span continuing the
// caller's traceparent, its store transaction a child span, and the job's evidence
// carries the caller's trace id.
func TestTracesExported(t *testing.T) {
	t.Parallel()
	recv, endpoint := newOTLPReceiver(t)
	a := launchAgateEnv(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + endpoint, "OTEL_BSP_SCHEDULE_DELAY=100",
		"OTEL_SERVICE_NAME=agate-e2e"}, filepath.Join(t.TempDir(), "agate.db"))
	a.waitServing(t)

	const traceHex, parentHex = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	traceID, _ := hex.DecodeString(traceHex)
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "traceparent", "00-"+traceHex+"-"+parentHex+"-01")
	dec := a.decision()
	d, err := dec.Decide(as(ctx, tokDecide), &agatev1.DecideRequest{Job: payment(t, "traced-1", "agent-7", 10)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dec.Approve(as(ctx, tokAlice), &agatev1.ApproveRequest{JobId: "traced-1", JobHash: d.GetJobHash()}); err != nil {
		t.Fatal(err)
	}
	job, err := dec.GetJob(as(ctxT(t), tokAudit), &agatev1.GetJobRequest{JobId: "traced-1"})
	if err != nil {
		t.Fatal(err)
	}
	if job.GetJob().GetJob().GetTraceId() != traceHex {
		t.Errorf("evidence trace_id %q, want the caller's %s", job.GetJob().GetJob().GetTraceId(), traceHex)
	}

	var approve, tx *tracepb.Span
	waitFor(t, "the Approve span and its transaction", 20*time.Second, func() bool {
		if approve = recv.find(traceID, "agate.v1.DecisionService/Approve", nil); approve == nil {
			return false
		}
		tx = recv.find(traceID, "store.ReadWrite", approve.GetSpanId())
		return tx != nil
	})
	if hex.EncodeToString(approve.GetParentSpanId()) != parentHex || approve.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("Approve span: parent %x kind %v, want parent %s, SERVER", approve.GetParentSpanId(), approve.GetKind(), parentHex)
	}
	// The RPC semantic conventions name the system rpc.system.name (rpc.system before 1.37).
	if v, old := attr(approve, "rpc.system.name"), attr(approve, "rpc.system"); v.GetStringValue() != "grpc" && old.GetStringValue() != "grpc" {
		t.Errorf("Approve span: no rpc.system.name grpc in %v", approve.GetAttributes())
	}
	if v := attr(tx, "db.system.name"); v.GetStringValue() != "sqlite" {
		t.Errorf("store span db.system.name = %v", v)
	}
	if v := attr(tx, "agate.store.attempts"); v.GetIntValue() < 1 {
		t.Errorf("store span agate.store.attempts = %v", v)
	}
}
