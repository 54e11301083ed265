package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/store/postgres/pgtest"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestHealthFollowsDatabase cuts the network between agate and PostgreSQL: health turns
// NOT_SERVING and /readyz 503 while it is cut, calls answer UNAVAILABLE, and both recover.
func TestHealthFollowsDatabase(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.EmptyURL(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCutProxy(t, u.Host)
	u.Host = proxy.addr()
	a := startAgate(t, u.String())
	hc := healthpb.NewHealthClient(a.conn)
	servingStatus := func() healthpb.HealthCheckResponse_ServingStatus {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return healthpb.HealthCheckResponse_UNKNOWN
		}
		return r.GetStatus()
	}
	if code, _ := httpGet(t, "http://"+a.httpAddr+"/readyz"); code != 200 {
		t.Fatalf("/readyz = %d before the cut", code)
	}

	proxy.setCut(true)
	waitFor(t, "NOT_SERVING", 20*time.Second, func() bool { return servingStatus() == healthpb.HealthCheckResponse_NOT_SERVING })
	if code, _ := httpGet(t, "http://"+a.httpAddr+"/readyz"); code != 503 {
		t.Fatalf("/readyz = %d while the database is cut", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = a.decision().Decide(as(ctx, tokDecide), &agatev1.DecideRequest{Job: payment(t, "cut-1", "agent-7", 1)})
	if c := statusCode(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
		t.Fatalf("Decide while cut: %v, want UNAVAILABLE", err)
	}
	for i := range 10 { // an outage fails many calls; the log says so once
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		_, _ = a.decision().Decide(as(cctx, tokDecide), &agatev1.DecideRequest{Job: payment(t, fmt.Sprintf("cut-x%d", i), "agent-7", 1)})
		ccancel()
	}

	proxy.setCut(false)
	waitFor(t, "SERVING again", 30*time.Second, func() bool { return servingStatus() == healthpb.HealthCheckResponse_SERVING })
	waitFor(t, "a decision after recovery", 30*time.Second, func() bool {
		_, err := a.decision().Decide(as(ctx, tokDecide), &agatev1.DecideRequest{Job: payment(t, "cut-2", "agent-7", 1)})
		return err == nil
	})
	logs := a.logs.String()
	if n := strings.Count(logs, "database unreachable"); n != 1 {
		t.Errorf("the outage is logged %d times, want once", n)
	}
	if n := strings.Count(logs, "database reachable again"); n != 1 {
		t.Errorf("the end of the outage is logged %d times, want once", n)
	}
	if strings.Contains(logs, `"level":"ERROR","msg":"rpc"`) {
		t.Errorf("calls during the outage are logged at ERROR:\n%s", logs)
	}
}

func statusCode(err error) codes.Code { return status.Code(err) }

// TestTokensReloadOnSIGHUP adds a principal to the tokens file and sends SIGHUP.
func TestTokensReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	tokens := filepath.Join(t.TempDir(), "tokens.yaml")
	base := readFile(t, filepath.Join(root, "examples/tokens.yaml"))
	if err := os.WriteFile(tokens, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAgate(t, filepath.Join(t.TempDir(), "agate.db"), "--tokens", tokens)
	ctx := ctxT(t)
	call := func() error {
		_, err := a.decision().Decide(as(ctx, "new-token"), &agatev1.DecideRequest{Job: payment(t, "hup-1", "agent-7", 1)})
		return err
	}
	wantErr(t, call(), codes.Unauthenticated, "UNAUTHENTICATED")
	sum := sha256.Sum256([]byte("new-token"))
	extra := "  - id: new-service\n    roles: [decide]\n    tokens_sha256: [\"" + hex.EncodeToString(sum[:]) + "\"]\n"
	if err := os.WriteFile(tokens, []byte(base+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new token to work", 10*time.Second, func() bool { return call() == nil })
	got, err := a.decision().GetJob(as(ctx, tokAudit), &agatev1.GetJobRequest{JobId: "hup-1"})
	if err != nil || got.Job.SubmittedBy != "new-service" {
		t.Fatalf("submitted_by = %v, %v", got, err)
	}
}

// TestMetrics checks the Prometheus figures after a decision, an approval and a conflict.
func TestMetrics(t *testing.T) {
	t.Parallel()
	a := startAgate(t, filepath.Join(t.TempDir(), "agate.db"))
	ctx := ctxT(t)
	dec := a.decision()
	d, err := dec.Decide(as(ctx, tokDecide), &agatev1.DecideRequest{Job: payment(t, "m-1", "agent-7", 5)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dec.Approve(as(ctx, tokAlice), &agatev1.ApproveRequest{JobId: "m-1", JobHash: d.JobHash}); err != nil {
		t.Fatal(err)
	}
	if _, err := dec.Approve(as(ctx, tokAlice), &agatev1.ApproveRequest{JobId: "m-1", JobHash: d.JobHash}); err != nil {
		t.Fatal(err)
	}
	_, err = dec.Publish(as(ctx, tokDispatch), &agatev1.PublishRequest{JobId: "m-1", JobHash: "sha256:" + strings.Repeat("0", 64)})
	wantErr(t, err, codes.Aborted, "JOB_HASH_MISMATCH")
	code, body := httpGet(t, "http://"+a.httpAddr+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`agate_decisions_total{decision="require_human"} 1`,
		`agate_approvals_total{outcome="approved"} 1`,
		`agate_approvals_total{outcome="already_approved"} 1`,
		`agate_conflicts_total{reason="job_hash_mismatch"} 1`,
		`agate_active_snapshot_info{snapshot="snap_`,
		`agate_rpc_requests_total{code="Aborted",method="/agate.v1.DecisionService/Publish"} 1`,
		`agate_rpc_duration_seconds_bucket{code="OK",method="/agate.v1.DecisionService/Decide"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if code, _ := httpGet(t, "http://"+a.httpAddr+"/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
}

// TestMutualTLS authenticates a client by its certificate's URI SAN, with no token.
func TestMutualTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, caKey := newCA(t)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Raw)
	srvCert, srvKey := issue(t, ca, caKey, &x509.Certificate{DNSNames: []string{"localhost"},
		IPAddresses: nil, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	writePEM(t, filepath.Join(dir, "server.pem"), "CERTIFICATE", srvCert.Raw)
	writeKey(t, filepath.Join(dir, "server.key"), srvKey)
	spiffe, _ := url.Parse("spiffe://example.org/agent-gateway-2")
	cliCert, cliKey := issue(t, ca, caKey, &x509.Certificate{URIs: []*url.URL{spiffe},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	tokens := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokens, []byte(readFile(t, filepath.Join(root, "examples/tokens.yaml"))+
		"  - id: spiffe://example.org/agent-gateway-2\n    roles: [decide]\n"+
		"    certificates: [\"uri:spiffe://example.org/agent-gateway-2\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := launchAgate(t, filepath.Join(dir, "agate.db"), "--tokens", tokens,
		"--tls-cert", filepath.Join(dir, "server.pem"), "--tls-key", filepath.Join(dir, "server.key"),
		"--tls-client-ca", filepath.Join(dir, "ca.pem"))

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	dial := func(withCert bool) *grpc.ClientConn {
		cfg := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
		if withCert {
			cfg.Certificates = []tls.Certificate{{Certificate: [][]byte{cliCert.Raw}, PrivateKey: cliKey}}
		}
		conn, err := grpc.NewClient(a.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	conn := dial(true)
	ctx := ctxT(t)
	var d *agatev1.DecideResponse
	waitFor(t, "a TLS decision", 60*time.Second, func() bool {
		var err error
		d, err = agatev1.NewDecisionServiceClient(conn).Decide(ctx, &agatev1.DecideRequest{Job: payment(t, "tls-1", "agent-7", 1)})
		return err == nil
	})
	if d.Decision != agatev1.Decision_DECISION_REQUIRE_HUMAN {
		t.Fatalf("decide = %v", d)
	}
	_, err := agatev1.NewDecisionServiceClient(dial(false)).Decide(ctx, &agatev1.DecideRequest{Job: payment(t, "tls-2", "agent-7", 1)})
	wantErr(t, err, codes.Unauthenticated, "UNAUTHENTICATED")
	got, err := agatev1.NewDecisionServiceClient(dial(false)).GetJob(as(ctx, tokAudit), &agatev1.GetJobRequest{JobId: "tls-1"})
	if err != nil || got.Job.SubmittedBy != "spiffe://example.org/agent-gateway-2" {
		t.Fatalf("submitted_by = %v, %v", got, err)
	}
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "agate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl.SerialNumber = serial
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeKey(t *testing.T, path string, key *ecdsa.PrivateKey) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, path, "PRIVATE KEY", der)
}
