package server

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store/sqlite"
)

const approvalPolicy = `version: v1
default: allow
rules:
  - id: needs-human
    when: {topic: pay.out}
    decision: require_human
    approval: {roles: [approver], quorum: 1, ttl: 1h}
`

// startDecisionServer serves the lifecycle over gRPC with approvalPolicy active, for
// principals svc (decide), alice and bob (approver), ops (operator) and auditor (audit).
func startDecisionServer(t *testing.T) (agatev1.DecisionServiceClient, *jobs.Service) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "agate.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	cache, _ := snapshots.NewCache(4)
	svc, err := jobs.New(jobs.Config{Store: st, Tracker: snapshots.NewTracker(st, cache, nil), Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	if _, err := svc.PutPolicy(ctx, jobs.Principal{ID: "owner", Roles: []string{"policy-admin"}}, []byte(approvalPolicy), true); err != nil {
		t.Fatal(err)
	}
	tokens := "principals:\n"
	for _, p := range []struct{ id, role string }{{"svc", "decide"}, {"alice", "approver"}, {"bob", "approver"},
		{"ops", "operator"}, {"auditor", "audit"}} {
		tokens += "  - id: " + p.id + "\n    roles: [" + p.role + "]\n    tokens_sha256: [\"" + sha("tok-"+p.id) + "\"]\n"
	}
	srv, err := New(Config{Jobs: svc, Store: st, Auth: NewAuthenticator(must(LoadIdentities(writeTokens(t, tokens)))(t))})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return agatev1.NewDecisionServiceClient(conn), svc
}

func decidePending(t *testing.T, c agatev1.DecisionServiceClient, id string) string {
	t.Helper()
	res, err := c.Decide(bearer("tok-svc"), &agatev1.DecideRequest{Job: &agatev1.Job{JobId: id, Topic: "pay.out", Actor: "agent"}})
	if err != nil {
		t.Fatal(err)
	}
	return res.GetJobHash()
}

// TestRepeatsNameTheFirstActor: a repeated Reject or Cancel answers with who did it
// first and when, as stored, never with the caller of the repeat.
func TestRepeatsNameTheFirstActor(t *testing.T) {
	t.Parallel()
	c, _ := startDecisionServer(t)

	hash := decidePending(t, c, "job-r")
	first, err := c.Reject(bearer("tok-alice"), &agatev1.RejectRequest{JobId: "job-r", JobHash: hash, Reason: "no"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Reject(bearer("tok-bob"), &agatev1.RejectRequest{JobId: "job-r", JobHash: hash, Reason: "no too"})
	if err != nil {
		t.Fatal(err)
	}
	if !again.GetAlreadyRejected() || again.GetRejectedBy() != "alice" || again.GetRejectedAt() != first.GetRejectedAt() {
		t.Errorf("repeated Reject by bob answered rejected_by=%q at %d (already=%v); want alice at %d",
			again.GetRejectedBy(), again.GetRejectedAt(), again.GetAlreadyRejected(), first.GetRejectedAt())
	}
	if first.GetRejectedBy() != "alice" || first.GetRejectedRole() != "approver" {
		t.Errorf("first Reject answered %q/%q, want alice/approver", first.GetRejectedBy(), first.GetRejectedRole())
	}

	decidePending(t, c, "job-c")
	firstC, err := c.Cancel(bearer("tok-svc"), &agatev1.CancelRequest{JobId: "job-c", Reason: "withdrawn"})
	if err != nil {
		t.Fatal(err)
	}
	againC, err := c.Cancel(bearer("tok-ops"), &agatev1.CancelRequest{JobId: "job-c", Reason: "withdrawn again"})
	if err != nil {
		t.Fatal(err)
	}
	if !againC.GetAlreadyCancelled() || againC.GetCancelledBy() != "svc" || againC.GetCancelledAt() != firstC.GetCancelledAt() {
		t.Errorf("repeated Cancel by the operator answered cancelled_by=%q at %d; want svc at %d",
			againC.GetCancelledBy(), againC.GetCancelledAt(), firstC.GetCancelledAt())
	}
}

// TestGetJobNamesTheConflict: while a job is in conflict, GetJob says why.
func TestGetJobNamesTheConflict(t *testing.T) {
	t.Parallel()
	c, svc := startDecisionServer(t)
	hash := decidePending(t, c, "job-d")
	owner := jobs.Principal{ID: "owner", Roles: []string{"policy-admin"}}
	if _, err := svc.PutPolicy(context.Background(), owner, []byte(approvalPolicy+"  - id: other\n    when: {topic: x.y}\n    decision: deny\n"), true); err != nil {
		t.Fatal(err)
	}
	_, err := c.Approve(bearer("tok-alice"), &agatev1.ApproveRequest{JobId: "job-d", JobHash: hash})
	if err == nil {
		t.Fatal("Approve after a snapshot change succeeded")
	}
	// A later refused attempt leaves the job in conflict; the answer keeps the cause.
	_, _ = c.Approve(bearer("tok-alice"), &agatev1.ApproveRequest{JobId: "job-d", JobHash: "sha256:" + sha("other")})
	got, err := c.GetJob(bearer("tok-auditor"), &agatev1.GetJobRequest{JobId: "job-d"})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetJob().GetStatus() != agatev1.JobStatus_JOB_STATUS_CONFLICT || got.GetJob().GetConflict() != "SNAPSHOT_DRIFT" {
		t.Errorf("GetJob: status %v conflict %q, want conflict SNAPSHOT_DRIFT", got.GetJob().GetStatus(), got.GetJob().GetConflict())
	}
}
