package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
)

// The development tokens of examples/tokens.yaml.
const (
	tokDecide   = "dev-decide"   // agent-gateway
	tokDispatch = "dev-dispatch" // dispatcher
	tokAlice    = "dev-alice"    // alice@example.com, finance-approver
	tokBob      = "dev-bob"      // bob@example.com, admin
	tokAudit    = "dev-audit"    // auditor@example.com
	tokPolicy   = "dev-policy"   // policy-owner@example.com, policy-admin
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	root    = repoRoot()
)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// agateBinary builds cmd/agate once per test binary.
func agateBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "agate-e2e-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "agate")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/agate")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// syncBuffer collects a process's output for failure reports.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// agate is one running `agate serve` process.
type agate struct {
	cmd      *exec.Cmd
	grpcAddr string
	httpAddr string
	logs     *syncBuffer
	conn     *grpc.ClientConn
	done     chan struct{}
}

// startAgate starts the binary on db with the example policy and tokens and waits until
// its health service reports SERVING.
func startAgate(t *testing.T, db string, extra ...string) *agate {
	t.Helper()
	a := launchAgate(t, db, extra...)
	a.waitServing(t)
	return a
}

// launchAgate starts the process without waiting, so several replicas can start (and
// race to migrate the database) together.
func launchAgate(t *testing.T, db string, extra ...string) *agate {
	t.Helper()
	return launchAgateEnv(t, nil, db, extra...)
}

// launchAgateEnv is launchAgate with extra environment variables (KEY=value).
func launchAgateEnv(t *testing.T, env []string, db string, extra ...string) *agate {
	t.Helper()
	a := &agate{grpcAddr: freeAddr(t), httpAddr: freeAddr(t), logs: &syncBuffer{}, done: make(chan struct{})}
	args := append([]string{"serve", "--grpc-addr", a.grpcAddr, "--http-addr", a.httpAddr, "--db", db,
		"--tokens", filepath.Join(root, "examples/tokens.yaml"), "--shutdown-grace", "5s"}, extra...)
	if !contains(extra, "--evidence-key") && strings.Contains(db, "://") {
		// Beside a SQLite file is the default; for a database URL it would be data/ in
		// the working directory, inside the repository.
		args = append(args, "--evidence-key", evidenceKey(t, db))
	}
	if !contains(extra, "--policy") {
		args = append(args, "--policy", filepath.Join(root, "examples/policy.yaml"))
	}
	a.cmd = exec.Command(agateBinary(t), args...)
	a.cmd.Env = append(os.Environ(), env...)
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		a.stop()
		if t.Failed() {
			t.Logf("agate %s logs:\n%s", a.grpcAddr, a.logs.String())
		}
	})
	conn, err := grpc.NewClient(a.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	a.conn = conn
	t.Cleanup(func() { conn.Close() })
	return a
}

var (
	keysMu sync.Mutex
	keys   = map[string]string{} // database → evidence key file its replicas share
)

// evidenceKey returns the signing key path for db's replicas, outside the repository.
func evidenceKey(t *testing.T, db string) string {
	keysMu.Lock()
	defer keysMu.Unlock()
	if k, ok := keys[db]; ok {
		return k
	}
	dir, err := os.MkdirTemp("", "agate-e2e-key")
	if err != nil {
		t.Fatal(err)
	}
	keys[db] = filepath.Join(dir, "evidence.key")
	return keys[db]
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func (a *agate) waitServing(t *testing.T) {
	t.Helper()
	hc := healthpb.NewHealthClient(a.conn)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-a.done:
			t.Fatalf("agate exited during start:\n%s", a.logs.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("agate not serving after 60s:\n%s", a.logs.String())
}

// stop sends SIGTERM and waits for a clean exit.
func (a *agate) stop() {
	select {
	case <-a.done:
		return
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(15 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}

// kill ends the process with SIGKILL, as a crash would.
func (a *agate) kill() {
	_ = a.cmd.Process.Kill()
	<-a.done
}

func as(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func (a *agate) decision() agatev1.DecisionServiceClient {
	return agatev1.NewDecisionServiceClient(a.conn)
}

func (a *agate) policy() agatev1.PolicyServiceClient { return agatev1.NewPolicyServiceClient(a.conn) }

func (a *agate) evidence() agatev1.EvidenceServiceClient {
	return agatev1.NewEvidenceServiceClient(a.conn)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
