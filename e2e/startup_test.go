package e2e

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/store/postgres/pgtest"
)

// A replica started while its database is unreachable stays up: health NOT_SERVING,
// /readyz 503, calls UNAVAILABLE, one log line for the wait. Once the database is
// reachable it migrates, applies its policy and serves.
func TestStartWhileDatabaseDown(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(pgtest.EmptyURL(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCutProxy(t, u.Host)
	proxy.setCut(true)
	u.Host = proxy.addr()
	a := launchAgate(t, u.String())

	hc := healthpb.NewHealthClient(a.conn)
	waitFor(t, "health NOT_SERVING while the database is down", 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
	})
	if code, _ := httpGet(t, "http://"+a.httpAddr+"/readyz"); code != 503 {
		t.Fatalf("/readyz = %d while the database is down, want 503", code)
	}
	ctx := ctxT(t)
	_, err = a.decision().Decide(as(ctx, tokDecide), &agatev1.DecideRequest{Job: payment(t, "down-1", "agent-7", 1)})
	if statusCode(err) != codes.Unavailable {
		t.Fatalf("Decide before the database was reached: %v, want UNAVAILABLE", err)
	}
	// Several backoff rounds: the process must still be there, waiting.
	time.Sleep(1500 * time.Millisecond)
	select {
	case <-a.done:
		t.Fatalf("agate exited while the database was down:\n%s", a.logs.String())
	default:
	}

	proxy.setCut(false)
	a.waitServing(t)
	if _, err := a.decision().Decide(as(ctx, tokDecide), &agatev1.DecideRequest{Job: payment(t, "down-2", "agent-7", 1)}); err != nil {
		t.Fatalf("Decide once the database is up: %v", err)
	}
	logs := a.logs.String()
	if n := strings.Count(logs, "database not ready: waiting"); n != 1 {
		t.Errorf("the wait is logged %d times, want once:\n%s", n, logs)
	}
	if n := strings.Count(logs, `"msg":"database ready"`); n != 1 {
		t.Errorf("the end of the wait is logged %d times, want once", n)
	}
}

// A start that fails because its address is taken writes nothing: the running
// server's active snapshot does not move and no snapshot is added.
func TestFailedStartWritesNothing(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "agate.db")
	a := startAgate(t, db)
	ctx := ctxT(t)
	before, err := a.policy().ListSnapshots(as(ctx, tokAudit), &agatev1.ListSnapshotsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other.yaml")
	if err := os.WriteFile(other, []byte("version: v1\ndefault: deny\nrules: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(agateBinary(t), "serve", "--grpc-addr", a.grpcAddr, "--http-addr", freeAddr(t),
		"--db", db, "--tokens", filepath.Join(root, "examples/tokens.yaml"), "--policy", other)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "address already in use") {
		t.Fatalf("second server on a taken address: %v\n%s", err, out)
	}
	after, err := a.policy().ListSnapshots(as(ctx, tokAudit), &agatev1.ListSnapshotsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(after.GetSnapshots()) != len(before.GetSnapshots()) {
		t.Errorf("snapshots: %d before the failed start, %d after", len(before.GetSnapshots()), len(after.GetSnapshots()))
	}
	for i, s := range after.GetSnapshots() {
		if s.GetActive() != before.GetSnapshots()[i].GetActive() || s.GetSnapshotId() != before.GetSnapshots()[i].GetSnapshotId() {
			t.Errorf("snapshot %s changed: active %v, was %v", s.GetSnapshotId(), s.GetActive(), before.GetSnapshots()[i].GetActive())
		}
	}
}
