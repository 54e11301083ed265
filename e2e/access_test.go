package e2e

import (
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
)

// TestAccessScopingTraceAndShutdown checks who sees which job, that a W3C traceparent
// becomes the job's trace_id, and that SIGTERM shuts the server down cleanly.
func TestAccessScopingTraceAndShutdown(t *testing.T) {
	t.Parallel()
	a := startAgate(t, filepath.Join(t.TempDir(), "agate.db"))
	ctx := ctxT(t)
	dec := a.decision()

	traced := metadata.AppendToOutgoingContext(as(ctx, tokDecide),
		"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	d, err := dec.Decide(traced, &agatev1.DecideRequest{Job: payment(t, "scope-1", "agent-7", 42)})
	if err != nil {
		t.Fatal(err)
	}
	if d.TraceId != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("trace_id = %q, want the traceparent's trace id", d.TraceId)
	}

	// The finance approver sees the pending payment; the dispatcher, who may approve
	// nothing, sees no pending job at all.
	list, err := dec.ListPendingApprovals(as(ctx, tokAlice), &agatev1.ListPendingApprovalsRequest{})
	if err != nil || len(list.PendingApprovals) != 1 || list.PendingApprovals[0].Job.Job.JobId != "scope-1" ||
		list.PendingApprovals[0].TimeLeftSeconds <= 0 || string(list.PendingApprovals[0].Job.Job.Payload) == "" {
		t.Fatalf("alice's pending list = %v, %v", list, err)
	}
	list, err = dec.ListPendingApprovals(as(ctx, tokDispatch), &agatev1.ListPendingApprovalsRequest{})
	if err != nil || len(list.PendingApprovals) != 0 {
		t.Fatalf("dispatcher's pending list = %v, %v", list, err)
	}

	// The submitter and an auditor may read the job; the dispatcher may not.
	for _, tok := range []string{tokDecide, tokAudit, tokAlice} {
		if _, err := dec.GetJob(as(ctx, tok), &agatev1.GetJobRequest{JobId: "scope-1"}); err != nil {
			t.Errorf("GetJob as %s: %v", tok, err)
		}
	}
	_, err = dec.GetJob(as(ctx, tokDispatch), &agatev1.GetJobRequest{JobId: "scope-1"})
	wantErr(t, err, codes.NotFound, "NOT_FOUND")

	// The submitter may cancel its own job.
	c, err := dec.Cancel(as(ctx, tokDecide), &agatev1.CancelRequest{JobId: "scope-1", Reason: "invoice withdrawn"})
	if err != nil || c.Status != agatev1.JobStatus_JOB_STATUS_CANCELLED {
		t.Fatalf("cancel = %v, %v", c, err)
	}

	// Evaluate is a what-if: it needs no job_id and writes nothing.
	job := payment(t, "", "agent-7", 42)
	ev, err := a.policy().Evaluate(as(ctx, tokDecide), &agatev1.EvaluateRequest{Job: job})
	if err != nil || ev.Decision != agatev1.Decision_DECISION_REQUIRE_HUMAN || ev.JobHash == "" {
		t.Fatalf("evaluate = %v, %v", ev, err)
	}

	a.stop()
	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
}
