package e2e

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protojson"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/server"
	"github.com/agate-pdp/agate/store/postgres/pgtest"
)

// backendDB returns a new database of the backend and raw access to it.
func backendDB(t *testing.T, backend string) (string, rawDB) {
	t.Helper()
	if backend == "postgres" {
		url := pgtest.URL(t)
		return url, rawPostgres(t, url)
	}
	db := filepath.Join(t.TempDir(), "agate.db")
	return db, rawSQLite(t, db)
}

// exportFile writes ExportEvidence to a file as grpcurl prints it, leaving out the
// events of the jobs in drop, as someone trimming an archive would.
func exportFile(t *testing.T, a *agate, drop ...string) string {
	t.Helper()
	stream, err := a.evidence().ExportEvidence(as(ctxT(t), tokAudit), &agatev1.ExportEvidenceRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if e := m.GetEvent(); e != nil && contains(drop, e.GetJobId()) {
			continue
		}
		out, err := protojson.MarshalOptions{Multiline: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(out)
		b.WriteString("\n")
	}
	path := filepath.Join(t.TempDir(), "export.json")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func waitSealed(t *testing.T, a *agate) {
	t.Helper()
	waitFor(t, "every chain to be sealed", 20*time.Second, func() bool {
		_, sealed := exportAll(t, a)
		return sealed
	})
}

func decidePayment(t *testing.T, a *agate, id string) *agatev1.DecideResponse {
	t.Helper()
	res, err := a.decision().Decide(as(ctxT(t), tokDecide), &agatev1.DecideRequest{Job: &agatev1.Job{JobId: id,
		Topic: "finance.payment.execute", Actor: "agent-7", Labels: labels(t, map[string]any{"env": "production"}),
		Payload: []byte(`{"amount": 1250.5, "currency": "EUR"}`)}})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestEvidenceTamperWithWitness, on each backend: a payload swapped in the database
// between Approve and Publish is refused; a job removed from an export is named; and
// the newest checkpoint dropped with the chain it alone sealed rewritten, invisible
// to the database alone, is caught with the witness file.
func TestEvidenceTamperWithWitness(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t)
			dir := t.TempDir()
			key := filepath.Join(dir, "evidence.key")
			witness := filepath.Join(dir, "witness.jsonl") // the default: next to the key
			db, raw := backendDB(t, backend)
			a := startAgate(t, db, auditArgs(key)...)
			pem := publicKeyFile(t, key)

			// The payload swapped between Approve and Publish.
			res := decidePayment(t, a, "swap-1")
			if _, err := a.decision().Approve(as(ctx, tokAlice), &agatev1.ApproveRequest{JobId: "swap-1", JobHash: res.GetJobHash()}); err != nil {
				t.Fatal(err)
			}
			raw(t, `UPDATE jobs SET payload = $1 WHERE job_id = $2`, []byte(`{"amount": 999999, "currency": "EUR"}`), "swap-1")
			_, err := a.decision().Publish(as(ctx, tokDispatch), &agatev1.PublishRequest{JobId: "swap-1", JobHash: res.GetJobHash()})
			meta := wantErr(t, err, codes.DataLoss, "STORED_JOB_TAMPERED")
			if meta["expected_job_hash"] != res.GetJobHash() || meta["computed_job_hash"] == res.GetJobHash() {
				t.Errorf("metadata %v", meta)
			}
			ev, err := a.evidence().GetEvidence(as(ctx, tokAudit), &agatev1.GetEvidenceRequest{JobId: "swap-1"})
			if err != nil {
				t.Fatal(err)
			}
			if last := ev.GetEvents()[len(ev.GetEvents())-1]; last.GetKind() != "conflict" || last.GetConflict() != "STORED_JOB_TAMPERED" {
				t.Errorf("last event %v, want the refusal recorded", last)
			}

			// A job removed from an export, checkpoints kept.
			decidePayment(t, a, "kept-1")
			waitSealed(t, a)
			agateOK(t, "evidence", "verify", "--file", exportFile(t, a), "--public-key", pem)
			out, code := agateRun(t, "evidence", "verify", "--file", exportFile(t, a, "kept-1"), "--public-key", pem)
			if code != 1 || !strings.Contains(out, "deleted job=kept-1 ") {
				t.Errorf("verify of an export without kept-1: exit %d\n%s", code, out)
			}

			// The newest checkpoint dropped, and the chain only it sealed rewritten.
			decidePayment(t, a, "late-1")
			waitSealed(t, a)
			late, err := a.evidence().GetEvidence(as(ctx, tokAudit), &agatev1.GetEvidenceRequest{JobId: "late-1"})
			if err != nil || len(late.GetEvents()) != 1 {
				t.Fatalf("late-1: %v, %v", late, err)
			}
			a.stop() // no sealer may seal the rewritten chain again
			forged := server.EventFromWire(late.GetEvents()[0])
			forged.Reason = "nothing to see"
			if forged.Hash, err = forged.ComputeHash(); err != nil {
				t.Fatal(err)
			}
			raw(t, `UPDATE evidence SET reason = $1, hash = $2 WHERE event_id = $3`, forged.Reason, forged.Hash, forged.EventID)
			raw(t, `DELETE FROM checkpoint_heads WHERE checkpoint_seq = (SELECT MAX(seq) FROM checkpoints)`)
			raw(t, `DELETE FROM checkpoints WHERE seq = (SELECT MAX(seq) FROM checkpoints)`)
			// The database alone cannot tell: what it holds is consistent.
			if out, code := agateRun(t, "evidence", "verify", "--db", db, "--public-key", pem); code != 0 {
				t.Errorf("verify without the witness: exit %d\n%s", code, out)
			}
			out, code = agateRun(t, "evidence", "verify", "--db", db, "--public-key", pem, "--witness", witness)
			if code != 1 || !strings.Contains(out, "deleted checkpoint") || !strings.Contains(out, "in witness") ||
				!strings.Contains(out, "modified job=late-1 seq=1 event="+forged.EventID) {
				t.Errorf("verify with the witness: exit %d\n%s", code, out)
			}
		})
	}
}

// waitExit waits for a replica that must refuse to start, and returns its logs.
func waitExit(t *testing.T, a *agate) string {
	t.Helper()
	select {
	case <-a.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("agate still running; it should have refused to start:\n%s", a.logs.String())
	}
	if a.cmd.ProcessState.ExitCode() == 0 {
		t.Errorf("agate exited 0; it should have refused to start:\n%s", a.logs.String())
	}
	return a.logs.String()
}

// TestEvidenceKeys, on each backend: a replica with another key refuses to start and
// says what to do; a rotation endorsed by the old key lets verifiers that pinned
// either key verify the checkpoints of both; the old key is then refused.
func TestEvidenceKeys(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			oldKey, newKey, strange := filepath.Join(dir, "old.key"), filepath.Join(dir, "new.key"), filepath.Join(dir, "strange.key")
			db, _ := backendDB(t, backend)
			a := startAgate(t, db, auditArgs(oldKey)...)
			decidePayment(t, a, "before-1")
			waitSealed(t, a)
			oldPEM := publicKeyFile(t, oldKey)

			// Another key: refused at start, with what to do.
			b := launchAgate(t, db, auditArgs(strange)...)
			logs := waitExit(t, b)
			if !strings.Contains(logs, "was signed by key") || !strings.Contains(logs, "--evidence-rotate-from") {
				t.Errorf("a replica with another key:\n%s", logs)
			}
			a.stop()

			// Rotation: the old key endorses the new one.
			agateOK(t, "evidence", "keygen", "--out", newKey)
			if _, code := agateRun(t, "evidence", "keygen", "--out", newKey); code == 0 {
				t.Error("keygen replaced an existing key file")
			}
			r := startAgate(t, db, append(auditArgs(newKey), "--evidence-rotate-from", oldKey)...)
			if !strings.Contains(r.logs.String(), "evidence signing key rotated") {
				t.Errorf("no rotation logged:\n%s", r.logs.String())
			}
			decidePayment(t, r, "after-1")
			waitSealed(t, r)
			newPEM := publicKeyFile(t, newKey)
			export := exportFile(t, r)
			for name, pins := range map[string][]string{"old": {oldPEM}, "new": {newPEM}, "both": {oldPEM, newPEM}} {
				args := []string{"evidence", "verify", "--db", db}
				for _, p := range pins {
					args = append(args, "--public-key", p)
				}
				if out, code := agateRun(t, args...); code != 0 {
					t.Errorf("verify --db pinning the %s key: exit %d\n%s", name, code, out)
				}
				fileArgs := append([]string{"evidence", "verify", "--file", export}, args[4:]...)
				if out, code := agateRun(t, fileArgs...); code != 0 {
					t.Errorf("verify --file pinning the %s key: exit %d\n%s", name, code, out)
				}
			}
			v, err := r.evidence().VerifyEvidence(as(ctxT(t), tokAudit), &agatev1.VerifyEvidenceRequest{})
			if err != nil || !v.GetOk() {
				t.Errorf("VerifyEvidence after the rotation: %v, %v", v, err)
			}
			// A restart with the new key needs the old one no more; the old key is refused.
			r.stop()
			startAgate(t, db, auditArgs(newKey)...).stop()
			if logs := waitExit(t, launchAgate(t, db, auditArgs(oldKey)...)); !strings.Contains(logs, "was signed by key") {
				t.Errorf("the old key after the rotation:\n%s", logs)
			}
		})
	}
}

// TestReplicasWithoutSharedKey: replicas of one PostgreSQL database must share a key.
// Without --evidence-key they refuse to start; each with a key of its own, the first
// claims the deployment and the others refuse, at start rather than later.
func TestReplicasWithoutSharedKey(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	tokens := filepath.Join(root, "examples/tokens.yaml")
	for i := range 3 {
		out, code := agateRun(t, "serve", "--db", url, "--tokens", tokens, "--grpc-addr", freeAddr(t), "--http-addr", freeAddr(t))
		if code == 0 || !strings.Contains(out, "--evidence-key: is required") {
			t.Errorf("replica %d without --evidence-key: exit %d\n%s", i, code, out)
		}
	}
	rs := make([]*agate, 3)
	for i := range rs {
		rs[i] = launchAgate(t, url, auditArgs(filepath.Join(t.TempDir(), "own.key"))...)
	}
	serving := 0
	for i, a := range rs {
		if servesOrExits(t, a) {
			serving++
		} else if !strings.Contains(a.logs.String(), "was signed by key") {
			t.Errorf("replica %d exited for another reason:\n%s", i, a.logs.String())
		}
	}
	if serving != 1 {
		t.Errorf("%d replicas with keys of their own serve; want exactly the first", serving)
	}
}

// servesOrExits waits until a serves (true) or exits (false).
func servesOrExits(t *testing.T, a *agate) bool {
	t.Helper()
	hc := healthpb.NewHealthClient(a.conn)
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-a.done:
			return false
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return true
		}
	}
	t.Fatalf("agate neither serves nor exits:\n%s", a.logs.String())
	return false
}
