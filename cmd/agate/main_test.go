package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func runArgs(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	var ex exitError
	switch {
	case err == nil:
	case errors.As(err, &ex):
		code = int(ex)
	default:
		code = 1
		errb.WriteString(err.Error())
	}
	return out.String(), errb.String(), code
}

func write(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPolicyCheck(t *testing.T) {
	t.Parallel()
	out, errs, code := runArgs(t, "policy", "check", "../../examples/policy.yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"snapshot: snap_", "sha256: ", "rules: 2", "warnings: 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// The reference policy loads, with a warning per label a job can omit.
	out, errs, code = runArgs(t, "policy", "check", "../../decision/testdata/reference.yaml")
	if code != 0 || !strings.Contains(out, "rules: 2") || !strings.Contains(errs, "scope_validated") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}

	bad := write(t, "bad.yaml", "version: v1\nrules:\n  - id: r1\n    when: {topic: a.b}\n    decision: maybe\n")
	_, errs, code = runArgs(t, "policy", "check", bad)
	if code == 0 || !strings.Contains(errs, "line 5") || !strings.Contains(errs, "decision") {
		t.Fatalf("bad policy: exit %d, stderr:\n%s", code, errs)
	}
}

func TestPolicyTest(t *testing.T) {
	t.Parallel()
	out, errs, code := runArgs(t, "policy", "test", "../../examples/policy.yaml", "../../examples/policy_test.yaml")
	if code != 0 || !strings.Contains(out, " passed, 0 failed") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	failing := write(t, "cases.yaml", `cases:
  - name: wrongly expects allow
    job: {topic: finance.payment.execute, actor: a, labels: {env: production}}
    expect: {decision: allow}
  - name: rightly expects require_human
    job: {topic: finance.payment.execute, actor: a, labels: {env: production}}
    expect: {decision: require_human, rule: require-approval-prod-finance}
`)
	out, _, code = runArgs(t, "policy", "test", "../../examples/policy.yaml", failing)
	if code == 0 || !strings.Contains(out, "1 passed, 1 failed") || !strings.Contains(out, "FAIL  wrongly expects allow") {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{nil, {"frobnicate"}, {"policy"}, {"policy", "check"}} {
		if _, errs, code := runArgs(t, args...); code != 2 || !strings.Contains(errs, "usage") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errs)
		}
	}
}

func TestServeConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string // substring of the error; "" = valid
	}{
		{"defaults plus tokens", []string{"--tokens", "t.yaml"}, ""},
		{"no tokens", nil, "--tokens"},
		{"bad grpc addr", []string{"--tokens", "t", "--grpc-addr", "7070"}, "--grpc-addr"},
		{"cert without key", []string{"--tokens", "t", "--tls-cert", "c.pem"}, "--tls-key"},
		{"client ca without tls", []string{"--tokens", "t", "--tls-client-ca", "ca.pem"}, "--tls-client-ca"},
		{"zero refresh", []string{"--tokens", "t", "--snapshot-refresh", "0s"}, "--snapshot-refresh"},
		{"bad log level", []string{"--tokens", "t", "--log-level", "loud"}, "--log-level"},
		{"bad cache", []string{"--tokens", "t", "--snapshot-cache", "x"}, "snapshot-cache"},
		{"stray argument", []string{"--tokens", "t", "extra"}, "unexpected"},
		{"batch max not a number", []string{"--tokens", "t", "--decide-batch-max", "x"}, "decide-batch-max"},
		{"negative batch max", []string{"--tokens", "t", "--decide-batch-max", "-1"}, "--decide-batch-max"},
		{"negative batch window", []string{"--tokens", "t", "--decide-batch-window", "-1ms"}, "--decide-batch-window"},
		{"zero seal interval", []string{"--tokens", "t", "--seal-interval", "0s"}, "--seal-interval"},
		{"zero expiry interval", []string{"--tokens", "t", "--expiry-interval", "0s"}, "--expiry-interval"},
		{"inflight not a number", []string{"--tokens", "t", "--decide-batch-inflight", "two"}, "decide-batch-inflight"},
		{"negative inflight", []string{"--tokens", "t", "--decide-batch-inflight", "-2"}, "--decide-batch-inflight"},
		{"pprof not a bool", []string{"--tokens", "t", "--pprof=maybe"}, "pprof"},
		{"pprof on", []string{"--tokens", "t", "--pprof"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseServeConfig(tc.args, &bytes.Buffer{})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to name %s", err, tc.want)
			}
		})
	}
}

func TestServeConfigFromEnvironment(t *testing.T) {
	t.Setenv("AGATE_GRPC_ADDR", "127.0.0.1:9999")
	t.Setenv("AGATE_TOKENS", "from-env.yaml")
	c, err := parseServeConfig(nil, &bytes.Buffer{})
	if err != nil || c.GRPCAddr != "127.0.0.1:9999" || c.TokensFile != "from-env.yaml" {
		t.Fatalf("config = %+v, %v", c, err)
	}
	// A flag wins over the environment.
	c, err = parseServeConfig([]string{"--grpc-addr", "127.0.0.1:1"}, &bytes.Buffer{})
	if err != nil || c.GRPCAddr != "127.0.0.1:1" {
		t.Fatalf("config = %+v, %v", c, err)
	}
}

func TestDecideInFlightDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		db       string
		inFlight int
		want     int
	}{
		{"data/agate.db", 0, 1},
		{"sqlite://data/agate.db", 0, 1},
		{"postgres://u@h/db", 0, 2},
		{"postgres://u@h/db", 5, 5},
		{"data/agate.db", 3, 3},
	}
	for _, tc := range tests {
		c := defaultServeConfig()
		c.DB, c.DecideInFlight = tc.db, tc.inFlight
		if got := c.decideInFlight(); got != tc.want {
			t.Errorf("db %s, flag %d: %d batches in flight, want %d", tc.db, tc.inFlight, got, tc.want)
		}
	}
}

func TestProfilerOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		rec := httptest.NewRecorder()
		httpMux(prometheus.NewRegistry(), nil, on).ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/", nil))
		if served := rec.Code == http.StatusOK && strings.Contains(rec.Body.String(), "goroutine"); served != on {
			t.Errorf("--pprof=%v: /debug/pprof/ answered %d", on, rec.Code)
		}
	}
}
