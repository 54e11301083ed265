package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agate-pdp/agate/server"
	"github.com/agate-pdp/agate/store"
)

func TestSecurityConfig(t *testing.T) {
	t.Parallel()
	tok := []string{"--tokens", "t.yaml"}
	tls := []string{"--tls-cert", "c.pem", "--tls-key", "k.pem"}
	tests := []struct {
		name string
		args []string
		want string // substring of the error; "" = valid
	}{
		{"plaintext on loopback", nil, ""},
		{"plaintext on localhost", []string{"--grpc-addr", "localhost:7070"}, ""},
		{"plaintext on IPv6 loopback", []string{"--grpc-addr", "[::1]:7070"}, ""},
		{"plaintext on every interface", []string{"--grpc-addr", ":7070"}, "--insecure-plaintext-tokens"},
		{"plaintext on 0.0.0.0", []string{"--grpc-addr", "0.0.0.0:7070"}, "--insecure-plaintext-tokens"},
		{"plaintext on a public address", []string{"--grpc-addr", "192.0.2.10:7070"}, "plaintext"},
		{"plaintext behind a mesh", []string{"--grpc-addr", "0.0.0.0:7070", "--insecure-plaintext-tokens"}, ""},
		{"plaintext accepted by env-style value", []string{"--grpc-addr", "0.0.0.0:7070", "--insecure-plaintext-tokens=true"}, ""},
		{"TLS on every interface", append([]string{"--grpc-addr", "0.0.0.0:7070"}, tls...), ""},
		{"require certs without CA", append([]string{"--require-client-cert"}, tls...), "--require-client-cert: needs --tls-client-ca"},
		{"require certs with CA", append([]string{"--require-client-cert", "--tls-client-ca", "ca.pem"}, tls...), ""},
		{"require certs not a bool", []string{"--require-client-cert=maybe"}, "require-client-cert"},
		{"pprof on loopback", []string{"--pprof"}, ""},
		{"pprof on every interface", []string{"--pprof", "--http-addr", "0.0.0.0:7071"}, "--pprof: needs a loopback --http-addr"},
		{"metrics on every interface", []string{"--http-addr", "0.0.0.0:7071"}, ""},
		{"password file for postgres", []string{"--db", "postgres://agate@db/agate", "--db-password-file", "pw", "--evidence-key", "k"}, ""},
		{"password file for sqlite", []string{"--db-password-file", "pw"}, "--db-password-file"},
		{"zero stream time", []string{"--max-stream-time", "0s"}, "--max-stream-time"},
		{"zero public streams", []string{"--max-public-streams", "0"}, "--max-public-streams"},
		{"public streams not a number", []string{"--max-public-streams", "many"}, "max-public-streams"},
		{"zero concurrent streams", []string{"--max-concurrent-streams", "0"}, "--max-concurrent-streams"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseServeConfig(append(append([]string(nil), tok...), tc.args...), &bytes.Buffer{})
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

func TestSecurityConfigFromEnvironment(t *testing.T) {
	t.Setenv("AGATE_TOKENS", "t.yaml")
	t.Setenv("AGATE_GRPC_ADDR", "0.0.0.0:7070")
	t.Setenv("AGATE_INSECURE_PLAINTEXT_TOKENS", "true")
	t.Setenv("AGATE_MAX_STREAM_TIME", "1m")
	c, err := parseServeConfig(nil, &bytes.Buffer{})
	if err != nil || !c.InsecurePlaintextTokens || c.MaxStreamTime != time.Minute {
		t.Fatalf("config = %+v, %v", c, err)
	}
	// A flag wins over the environment.
	if _, err := parseServeConfig([]string{"--insecure-plaintext-tokens=false"}, &bytes.Buffer{}); err == nil {
		t.Fatal("--insecure-plaintext-tokens=false did not override the environment")
	}
	t.Setenv("AGATE_INSECURE_PLAINTEXT_TOKENS", "yes please")
	if _, err := parseServeConfig(nil, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "AGATE_INSECURE_PLAINTEXT_TOKENS") {
		t.Fatalf("err = %v, want it to name the variable", err)
	}
}

// A plaintext listener open to the network refuses to start before it opens anything.
func TestServeRefusesPlaintextTokensOnTheNetwork(t *testing.T) {
	t.Parallel()
	db := t.TempDir() + "/agate.db"
	_, errs, code := runArgs(t, "serve", "--tokens", "../../examples/tokens.yaml", "--db", db,
		"--grpc-addr", "0.0.0.0:0", "--http-addr", "127.0.0.1:0")
	if code == 0 || !strings.Contains(errs, "--insecure-plaintext-tokens") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if _, err := os.Stat(db); !os.IsNotExist(err) {
		t.Fatalf("the database was created before the refusal: %v", err)
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://u:secret@db:5432/agate?sslmode=require":   "postgres://%E2%80%A6@db:5432/agate?sslmode=require",
		"postgres://db/agate?password=secret&sslmode=disable": "postgres://db/agate?password=%E2%80%A6&sslmode=disable",
		"postgresql://u@db/agate?sslpassword=secret":          "postgresql://%E2%80%A6@db/agate?sslpassword=%E2%80%A6",
		"postgres://u:sec%ZZret@db/agate":                     "postgres://…",
		"data/agate.db":                                       "data/agate.db",
		"postgres://db/agate":                                 "postgres://db/agate",
	} {
		got := redactURL(in)
		if got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
		if strings.Contains(got, "secret") || strings.Contains(got, "sec%ZZret") {
			t.Errorf("redactURL(%q) = %q leaks the password", in, got)
		}
	}
}

func TestRedactArgs(t *testing.T) {
	t.Parallel()
	args := []string{"agate", "serve", "--db", "postgres://u:secret@db/agate", "--db=postgres://db/x?password=secret",
		"-db=postgresql://u:secret@db/x", "--tokens", "t.yaml"}
	got := strings.Join(redactArgs(args), " ")
	if strings.Contains(got, "secret") {
		t.Fatalf("redactArgs left a password: %s", got)
	}
	for _, keep := range []string{"--db=postgres://db/x", "-db=postgresql://", "--tokens t.yaml", "@db/agate"} {
		if !strings.Contains(got, keep) {
			t.Errorf("redactArgs lost %q: %s", keep, got)
		}
	}
}

// /debug/pprof/cmdline shows the arguments without the database password.
func TestProfilerCmdlineHidesPassword(t *testing.T) {
	// Not parallel: it sets os.Args.
	saved := os.Args
	t.Cleanup(func() { os.Args = saved })
	os.Args = []string{"agate", "serve", "--db", "postgres://agate:hunter2@db/agate"}
	rec := httptest.NewRecorder()
	httpMux(prometheus.NewRegistry(), nil, true).ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/cmdline", nil))
	if rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), "hunter2") || !strings.Contains(rec.Body.String(), "@db/agate") {
		t.Fatalf("cmdline answered %d: %q", rec.Code, rec.Body.String())
	}
}

// An unreachable database's error names no password, wherever the password came from.
func TestDatabaseErrorsHidePassword(t *testing.T) {
	t.Parallel()
	pwFile := write(t, "pw", "filesecret\n")
	if err := os.Chmod(pwFile, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ db, file string }{
		{"postgres://u:secret@127.0.0.1:1/x?connect_timeout=2", ""},
		{"postgres://u@127.0.0.1:1/x?password=secret&connect_timeout=2", ""},
		{"postgres://u:secret@127.0.0.1:bad/x", ""},
		{"postgres://u:secret@127.0.0.1:1/x?sslmode=bogus", ""},
		{"postgres://u@127.0.0.1:1/x?connect_timeout=2", pwFile},
	} {
		var logs bytes.Buffer
		c := defaultServeConfig()
		c.DB, c.DBPasswordFile = tc.db, tc.file
		// Long enough for the first attempt and its logged wait; an unreachable database
		// is then waited for until the context ends.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		log := slog.New(slog.NewJSONHandler(&logs, nil))
		pw, err := c.databasePassword(log)
		var st store.Store
		if err == nil {
			st, err = openStore(ctx, c.DB, pw, log, nil)
		}
		cancel()
		if err == nil {
			_ = st.Close()
			t.Fatalf("%s: opened an unreachable database", tc.db)
		}
		for _, s := range []string{"secret", "filesecret"} {
			if strings.Contains(err.Error(), s) || strings.Contains(logs.String(), s) {
				t.Errorf("%s: the password is in the error or the log:\n%v\n%s", tc.db, err, logs.String())
			}
		}
	}
}

func TestReadPasswordFile(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	for body, want := range map[string]string{"pw\n": "pw", "pw\r\n": "pw", "pw": "pw", " pw \n\n": " pw \n"} {
		got, err := readPasswordFile(write(t, "pw", body), log)
		if err != nil || got != want {
			t.Errorf("readPasswordFile(%q) = %q, %v; want %q", body, got, err, want)
		}
	}
	if _, err := readPasswordFile(write(t, "pw", "\n"), log); err == nil {
		t.Error("an empty password file was accepted")
	}
	if _, err := readPasswordFile(t.TempDir()+"/missing", log); err == nil || !strings.Contains(err.Error(), "--db-password-file") {
		t.Errorf("missing file: %v", err)
	}
}

func TestWarnUnmappedCertificates(t *testing.T) {
	t.Parallel()
	noCerts := write(t, "tokens.yaml", "principals:\n  - id: a\n    roles: [x]\n    tokens_sha256: [\"0000000000000000000000000000000000000000000000000000000000000000\"]\n")
	withCerts := write(t, "tokens.yaml", "principals:\n  - id: a\n    roles: [x]\n    certificates: [\"dns:a.internal\"]\n")
	for _, tc := range []struct {
		ca, tokens string
		warn       bool
	}{{"ca.pem", noCerts, true}, {"ca.pem", withCerts, false}, {"", noCerts, false}} {
		ids, err := server.LoadIdentities(tc.tokens)
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		c := defaultServeConfig()
		c.TLSClientCA, c.TokensFile = tc.ca, tc.tokens
		c.warnUnmappedCertificates(ids, slog.New(slog.NewJSONHandler(&logs, nil)))
		if got := strings.Contains(logs.String(), "authenticate nobody"); got != tc.warn {
			t.Errorf("ca %q, %s: warned %v, want %v", tc.ca, tc.tokens, got, tc.warn)
		}
	}
}
