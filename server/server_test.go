package server

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/telemetry"
)

func TestToStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		err      error
		code     codes.Code
		reason   string
		field    string
		leakFree bool // message must not contain the cause
	}{
		{"drift", &jobs.Error{Code: jobs.CodeAborted, Reason: "SNAPSHOT_DRIFT", Msg: "drift",
			Meta: map[string]string{"expected_snapshot": "snap_a", "active_snapshot": "snap_b"}}, codes.Aborted, "SNAPSHOT_DRIFT", "", false},
		{"bad field", &jobs.Error{Code: jobs.CodeInvalidArgument, Reason: "INVALID_FIELD", Field: "job.labels.env", Msg: "job.labels.env: bad"},
			codes.InvalidArgument, "INVALID_FIELD", "job.labels.env", false},
		{"self approval", &jobs.Error{Code: jobs.CodePermissionDenied, Reason: "SELF_APPROVAL", Msg: "no"}, codes.PermissionDenied, "SELF_APPROVAL", "", false},
		{"expired", &jobs.Error{Code: jobs.CodeFailedPrecondition, Reason: "APPROVAL_EXPIRED", Msg: "late"}, codes.FailedPrecondition, "APPROVAL_EXPIRED", "", false},
		{"not found", &jobs.Error{Code: jobs.CodeNotFound, Reason: "NOT_FOUND", Msg: "nope"}, codes.NotFound, "NOT_FOUND", "", false},
		{"unavailable", &jobs.Error{Code: jobs.CodeUnavailable, Reason: "STORE_UNAVAILABLE", Msg: "db down"}, codes.Unavailable, "STORE_UNAVAILABLE", "", false},
		{"unauthenticated", errUnauthenticated, codes.Unauthenticated, "UNAUTHENTICATED", "", false},
		{"role", &accessError{reason: "ROLE_NOT_ALLOWED", msg: "no"}, codes.PermissionDenied, "ROLE_NOT_ALLOWED", "", false},
		{"internal", errors.New("pq: password authentication failed for user secret"), codes.Internal, "", "", true},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded, "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := status.Convert(toStatus(context.Background(), slog.New(slog.DiscardHandler), tc.err))
			if st.Code() != tc.code {
				t.Fatalf("code = %v, want %v", st.Code(), tc.code)
			}
			if tc.leakFree && st.Message() != "internal error" {
				t.Fatalf("internal detail leaked: %q", st.Message())
			}
			var info *errdetails.ErrorInfo
			var bad *errdetails.BadRequest
			for _, d := range st.Details() {
				switch x := d.(type) {
				case *errdetails.ErrorInfo:
					info = x
				case *errdetails.BadRequest:
					bad = x
				}
			}
			if tc.reason == "" {
				if info != nil {
					t.Fatalf("unexpected ErrorInfo %v", info)
				}
				return
			}
			if info == nil || info.Reason != tc.reason || info.Domain != errorDomain {
				t.Fatalf("ErrorInfo = %v, want reason %s", info, tc.reason)
			}
			if je, ok := tc.err.(*jobs.Error); ok {
				for k, v := range je.Meta {
					if info.Metadata[k] != v {
						t.Fatalf("metadata %s = %q, want %q", k, info.Metadata[k], v)
					}
				}
			}
			if tc.field != "" {
				if info.Metadata["field"] != tc.field || bad == nil || bad.FieldViolations[0].Field != tc.field {
					t.Fatalf("field not named: info=%v bad=%v", info, bad)
				}
			}
		})
	}
}

func writeTokens(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tokens.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	// sha256("tok-a")
	path := writeTokens(t, `principals:
  - id: svc-a
    roles: [decide]
    tokens_sha256: ["sha256:1a5a7a0ab8a5d2b8b7f5f5b5b6c2e2c8f1f0a6d3e3e8a7d3c1c0b9a8f7e6d5c4"]
  - id: svc-b
    roles: [dispatch, audit]
    tokens_sha256: ["`+sha("tok-b")+`"]
`)
	ids, err := LoadIdentities(path)
	if err != nil {
		t.Fatal(err)
	}
	a := NewAuthenticator(ids)
	tests := []struct {
		name   string
		header string
		want   string
	}{
		{"valid bearer", "Bearer tok-b", "svc-b"},
		{"scheme is case-insensitive", "bearer tok-b", "svc-b"},
		{"wrong token", "Bearer tok-x", ""},
		{"not bearer", "Basic dG9rLWI=", ""},
		{"empty token", "Bearer ", ""},
		{"no header", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			if tc.header != "" {
				ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", tc.header))
			}
			p, err := a.Authenticate(ctx)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("authenticated as %q, want refusal", p.ID)
				}
				if status.Code(toStatus(ctx, slog.New(slog.DiscardHandler), err)) != codes.Unauthenticated {
					t.Fatalf("err = %v, want UNAUTHENTICATED", err)
				}
				return
			}
			if err != nil || p.ID != tc.want {
				t.Fatalf("got %q, %v; want %q", p.ID, err, tc.want)
			}
		})
	}
}

func TestAllowed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		method string
		roles  []string
		want   bool
	}{
		{"/agate.v1.DecisionService/Decide", []string{"decide"}, true},
		{"/agate.v1.DecisionService/Decide", []string{"dispatch"}, false},
		{"/agate.v1.DecisionService/Publish", []string{"dispatch"}, true},
		{"/agate.v1.DecisionService/ListReplayable", []string{"decide", "finance-approver"}, false},
		{"/agate.v1.DecisionService/Publish", []string{"decide"}, true}, // standing is the lifecycle's to decide
		{"/agate.v1.DecisionService/Approve", []string{"finance-approver"}, true},
		{"/agate.v1.PolicyService/PutPolicy", []string{"audit"}, false},
		{"/agate.v1.PolicyService/PutPolicy", []string{"policy-admin"}, true},
		{"/agate.v1.PolicyService/ListSnapshots", []string{"audit"}, true},
		{"/agate.v1.EvidenceService/GetEvidence", []string{"audit"}, true},
		{"/agate.v1.EvidenceService/GetEvidence", []string{"admin"}, false},
		{"/agate.v1.DecisionService/SomethingNew", []string{"decide", "admin", "audit"}, false},
	}
	for _, tc := range tests {
		if got := allowed(tc.method, tc.roles); got != tc.want {
			t.Errorf("allowed(%s, %v) = %v, want %v", tc.method, tc.roles, got, tc.want)
		}
	}
	// Every RPC of every service must have an entry: a forgotten one would be closed,
	// which is safe but a bug.
	for _, m := range allMethods() {
		if _, ok := methodRoles[m]; !ok && !isEvidence(m) {
			t.Errorf("no roles declared for %s", m)
		}
	}
}

// A job's trace_id continues the caller's W3C trace context; a malformed traceparent
// is ignored and a fresh id is made; an explicit trace_id wins.
func TestDecideTraceID(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01": "4bf92f3577b34da6a3ce929d0e0e4736",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01": "",
		"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01":  "",
		"garbage": "",
		"00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01": "",
	}
	for in, want := range tests {
		ctx := telemetry.Propagator.Extract(context.Background(), propagation.MapCarrier{"traceparent": in})
		r, err := decideRequest(ctx, &agatev1.Job{JobId: "j"})
		if err != nil {
			t.Fatal(err)
		}
		if want != "" && r.TraceID != want || want == "" && len(r.TraceID) != 32 {
			t.Errorf("traceparent %q: trace_id %q, want %q", in, r.TraceID, want)
		}
	}
	ctx := telemetry.Propagator.Extract(context.Background(),
		propagation.MapCarrier{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
	if r, _ := decideRequest(ctx, &agatev1.Job{JobId: "j", TraceId: "mine"}); r.TraceID != "mine" {
		t.Errorf("explicit trace_id: %q", r.TraceID)
	}
}

func TestRecoverUnary(t *testing.T) {
	t.Parallel()
	ic := recoverUnary(slog.New(slog.DiscardHandler))
	_, err := ic(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/x/y"},
		func(context.Context, any) (any, error) { panic("boom") })
	if status.Code(err) != codes.Internal || status.Convert(err).Message() != "internal error" {
		t.Fatalf("err = %v, want INTERNAL without detail", err)
	}
}

// The README's metrics table names exactly the metrics the server registers.
func TestMetricsDocumented(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	// A vector without a child is not gathered: give each one.
	m.decisions.WithLabelValues("allow").Inc()
	m.approvals.WithLabelValues("approved").Inc()
	m.conflicts.WithLabelValues("lock_busy").Inc()
	m.replays.WithLabelValues("WORKER_OUTAGE").Inc()
	m.rpcs.WithLabelValues("m", "OK").Inc()
	m.latency.WithLabelValues("m", "OK").Observe(1)
	m.SetActiveSnapshot("snap_x")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, mm := range regexp.MustCompile("(?m)^\\| `(agate_[a-z_]+)`").FindAllStringSubmatch(string(readme), -1) {
		if !strings.HasPrefix(mm[1], "agate_notifications_") { // the deliverer's, checked in package notify
			documented = append(documented, mm[1])
		}
	}
	slices.Sort(names)
	slices.Sort(documented)
	if !slices.Equal(names, documented) {
		t.Errorf("README metrics table\n%v\nregistered\n%v", documented, names)
	}
}
