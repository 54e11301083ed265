package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/agate-pdp/agate/canonical"
	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
)

// wantErr asserts a gRPC error's code and google.rpc.ErrorInfo reason, and returns the
// ErrorInfo metadata.
func wantErr(t *testing.T, err error, code codes.Code, reason string) map[string]string {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("err = %v, want %v/%s", err, code, reason)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			if info.Reason != reason {
				t.Fatalf("reason = %s, want %s (%v)", info.Reason, reason, err)
			}
			return info.Metadata
		}
	}
	if reason != "" {
		t.Fatalf("no ErrorInfo in %v, want reason %s", err, reason)
	}
	return nil
}

func labels(t *testing.T, m map[string]any) map[string]*structpb.Value {
	t.Helper()
	out := map[string]*structpb.Value{}
	for k, v := range m {
		pv, err := structpb.NewValue(v)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = pv
	}
	return out
}

func payment(t *testing.T, id, actor string, amount float64) *agatev1.Job {
	return &agatev1.Job{JobId: id, Topic: "finance.payment.execute", Actor: actor,
		Labels:  labels(t, map[string]any{"env": "production"}),
		Payload: []byte(fmt.Sprintf(`{"amount":%v,"currency":"EUR","invoice":"INV-%s"}`, amount, id))}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// runReferenceScenario drives the compliance guide's scenario through one server.
func runReferenceScenario(t *testing.T, a *agate) {
	ctx := ctxT(t)
	dec, pol := a.decision(), a.policy()

	t.Run("approved payment is published", func(t *testing.T) {
		job := payment(t, "pay-1", "agent-7", 1250.5)
		d, err := dec.Decide(as(ctx, tokDecide), &agatev1.DecideRequest{Job: job})
		if err != nil {
			t.Fatal(err)
		}
		if d.Decision != agatev1.Decision_DECISION_REQUIRE_HUMAN || d.Status != agatev1.JobStatus_JOB_STATUS_PENDING_APPROVAL ||
			d.RuleId != "require-approval-prod-finance" {
			t.Fatalf("decide = %v", d)
		}
		want, err := canonical.JobHash(job.Topic, job.Actor, map[string]any{"env": "production"}, job.Payload)
		if err != nil || d.JobHash != want {
			t.Fatalf("job_hash = %s, want %s (%v)", d.JobHash, want, err)
		}
		again, err := dec.Decide(as(ctx, tokDecide), &agatev1.DecideRequest{Job: job})
		if err != nil || !again.AlreadyDecided || again.JobHash != d.JobHash {
			t.Fatalf("repeat decide = %v, %v", again, err)
		}
		ap, err := dec.Approve(as(ctx, tokAlice), &agatev1.ApproveRequest{JobId: "pay-1", JobHash: d.JobHash, Reason: "invoice checked"})
		if err != nil {
			t.Fatal(err)
		}
		if ap.Status != agatev1.JobStatus_JOB_STATUS_APPROVED || ap.AlreadyApproved {
			t.Fatalf("approve = %v", ap)
		}
		pub, err := dec.Publish(as(ctx, tokDispatch), &agatev1.PublishRequest{JobId: "pay-1", JobHash: d.JobHash})
		if err != nil {
			t.Fatal(err)
		}
		if pub.Job.Status != agatev1.JobStatus_JOB_STATUS_APPROVED_AND_PUBLISHED || pub.Job.Attempt != 1 ||
			string(pub.Job.Job.Payload) != string(job.Payload) {
			t.Fatalf("publish = %v", pub)
		}
		again2, err := dec.Publish(as(ctx, tokDispatch), &agatev1.PublishRequest{JobId: "pay-1", JobHash: d.JobHash})
		if err != nil || !again2.AlreadyPublished || again2.Job.Attempt != 1 {
			t.Fatalf("repeat publish = %v, %v", again2, err)
		}
		got, err := dec.GetJob(as(ctx, tokAudit), &agatev1.GetJobRequest{JobId: "pay-1"})
		if err != nil {
			t.Fatal(err)
		}
		j := got.Job
		if j.PolicySnapshot == "" || j.JobHash != d.JobHash || len(j.Approvals) != 1 ||
			j.Approvals[0].ApprovedBy != "alice@example.com" || j.Approvals[0].ApprovedRole != "finance-approver" ||
			j.Approvals[0].ApprovedAt == 0 || j.SubmittedBy != "agent-gateway" {
			t.Fatalf("job = %v", j)
		}
	})

	t.Run("unscoped external export is denied", func(t *testing.T) {
		d, err := dec.Decide(as(ctx, tokDecide), &agatev1.DecideRequest{Job: &agatev1.Job{
			JobId: "export-1", Topic: "customer.data.export", Actor: "agent-9",
			Labels:  labels(t, map[string]any{"env": "production", "destination": "external"}),
			Payload: []byte(`{"dataset":"customers","rows":5000}`)}})
		if err != nil {
			t.Fatal(err)
		}
		if d.Decision != agatev1.Decision_DECISION_DENY || d.Status != agatev1.JobStatus_JOB_STATUS_DENIED ||
			d.RuleId != "deny-unscoped-external-export" {
			t.Fatalf("decide = %v", d)
		}
		_, err = dec.Publish(as(ctx, tokDispatch), &agatev1.PublishRequest{JobId: "export-1", JobHash: d.JobHash})
		wantErr(t, err, codes.FailedPrecondition, "NOT_PENDING")
	})

	t.Run("payload changed before publish is a hash mismatch", func(t *testing.T) {
		job := payment(t, "pay-2", "agent-7", 99)
		d, err := dec.Decide(as(ctx, tokDecide), &agatev1.DecideRequest{Job: job})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dec.Approve(as(ctx, tokAlice), &agatev1.ApproveRequest{JobId: "pay-2", JobHash: d.JobHash}); err != nil {
			t.Fatal(err)
		}
		tampered, err := canonical.JobHash(job.Topic, job.Actor, map[string]any{"env": "production"},
			[]byte(`{"amount":99000,"currency":"EUR","invoice":"INV-pay-2"}`))
		if err != nil {
			t.Fatal(err)
		}
		_, err = dec.Publish(as(ctx, tokDispatch), &agatev1.PublishRequest{JobId: "pay-2", JobHash: tampered})
		meta := wantErr(t, err, codes.Aborted, "JOB_HASH_MISMATCH")
		if len(meta) == 0 {
			t.Fatal("mismatch carries no expected/actual metadata")
		}
		// Re-submitting the tampered job under the same id is refused too.
		job.Payload = []byte(`{"amount":99000,"currency":"EUR","invoice":"INV-pay-2"}`)
		_, err = dec.Decide(as(ctx, tokDecide), &agatev1.DecideRequest{Job: job})
		wantErr(t, err, codes.Aborted, "JOB_HASH_MISMATCH")
		got, err := dec.GetJob(as(ctx, tokAudit), &agatev1.GetJobRequest{JobId: "pay-2"})
		if err != nil || got.Job.Status != agatev1.JobStatus_JOB_STATUS_APPROVED || got.Job.Attempt != 0 {
			t.Fatalf("job after refused publish = %v, %v", got, err)
		}
	})

	t.Run("self approval is refused", func(t *testing.T) {
		d, err := dec.Decide(as(ctx, tokDecide), &agatev1.DecideRequest{Job: payment(t, "pay-3", "alice@example.com", 10)})
		if err != nil {
			t.Fatal(err)
		}
		_, err = dec.Approve(as(ctx, tokAlice), &agatev1.ApproveRequest{JobId: "pay-3", JobHash: d.JobHash})
		wantErr(t, err, codes.PermissionDenied, "SELF_APPROVAL")
	})

	t.Run("credentials", func(t *testing.T) {
		_, err := dec.Decide(ctx, &agatev1.DecideRequest{Job: payment(t, "pay-4", "agent-7", 1)})
		wantErr(t, err, codes.Unauthenticated, "UNAUTHENTICATED")
		_, err = dec.Decide(as(ctx, "not-a-token"), &agatev1.DecideRequest{Job: payment(t, "pay-4", "agent-7", 1)})
		wantErr(t, err, codes.Unauthenticated, "UNAUTHENTICATED")
		// A caller without standing on a job gets the answer a missing job gets.
		_, err = dec.Publish(as(ctx, tokDecide), &agatev1.PublishRequest{JobId: "pay-1", JobHash: "sha256:" + strings.Repeat("0", 64)})
		wantErr(t, err, codes.NotFound, "NOT_FOUND")
		_, err = dec.Publish(as(ctx, tokDecide), &agatev1.PublishRequest{JobId: "pay-1", JobHash: "sha256:00"})
		wantErr(t, err, codes.InvalidArgument, "INVALID_FIELD")
		_, err = dec.ListReplayable(as(ctx, tokDecide), &agatev1.ListReplayableRequest{})
		wantErr(t, err, codes.PermissionDenied, "ROLE_NOT_ALLOWED")
		_, err = dec.GetJob(as(ctx, tokAudit), &agatev1.GetJobRequest{JobId: "pay-4"})
		wantErr(t, err, codes.NotFound, "NOT_FOUND")
	})

	t.Run("malformed requests name the field and write nothing", func(t *testing.T) {
		tests := []struct {
			name  string
			job   *agatev1.Job
			field string
		}{
			{"bad job id", &agatev1.Job{JobId: "bad id!", Topic: "finance.payment.execute", Actor: "a"}, "job_id"},
			{"wildcard topic", &agatev1.Job{JobId: "bad-2", Topic: "finance.*", Actor: "a"}, "topic"},
			{"no actor", &agatev1.Job{JobId: "bad-3", Topic: "finance.payment.execute"}, "actor"},
			{"label not in enum", &agatev1.Job{JobId: "bad-4", Topic: "finance.payment.execute", Actor: "a",
				Labels: labels(t, map[string]any{"env": "moon"})}, "env"},
			{"payload not an object", &agatev1.Job{JobId: "bad-5", Topic: "finance.payment.execute", Actor: "a",
				Labels: labels(t, map[string]any{"env": "dev"}), Payload: []byte(`[1,2]`)}, "payload"},
			{"inexact number", &agatev1.Job{JobId: "bad-6", Topic: "finance.payment.execute", Actor: "a",
				Labels: labels(t, map[string]any{"env": "dev"}), Payload: []byte(`{"amount":9007199254740993}`)}, "payload"},
		}
		for _, tc := range tests {
			_, err := dec.Decide(as(ctx, tokDecide), &agatev1.DecideRequest{Job: tc.job})
			meta := wantErr(t, err, codes.InvalidArgument, "INVALID_FIELD")
			if !containsStr(meta["field"], tc.field) {
				t.Errorf("%s: field = %q, want it to name %q", tc.name, meta["field"], tc.field)
			}
			if tc.job.JobId != "bad id!" {
				_, err = dec.GetJob(as(ctx, tokAudit), &agatev1.GetJobRequest{JobId: tc.job.JobId})
				wantErr(t, err, codes.NotFound, "NOT_FOUND")
			}
		}
	})

	// Last: it changes the active policy.
	t.Run("policy change before approval is snapshot drift", func(t *testing.T) {
		d, err := dec.Decide(as(ctx, tokDecide), &agatev1.DecideRequest{Job: payment(t, "pay-5", "agent-7", 500)})
		if err != nil {
			t.Fatal(err)
		}
		src := readFile(t, filepath.Join(root, "examples/policy.yaml")) + "\n# tightened\n"
		put, err := pol.PutPolicy(as(ctx, tokPolicy), &agatev1.PutPolicyRequest{Source: src, Activate: true})
		if err != nil || !put.Activated || put.Snapshot.SnapshotId == d.PolicySnapshot {
			t.Fatalf("put policy = %v, %v", put, err)
		}
		_, err = dec.Approve(as(ctx, tokAlice), &agatev1.ApproveRequest{JobId: "pay-5", JobHash: d.JobHash})
		meta := wantErr(t, err, codes.Aborted, "SNAPSHOT_DRIFT")
		if b, _ := json.Marshal(meta); !containsStr(string(b), put.Snapshot.SnapshotId) {
			t.Fatalf("drift metadata %s does not name the active snapshot %s", b, put.Snapshot.SnapshotId)
		}
		// Deciding again re-decides under the active snapshot.
		re, err := dec.Decide(as(ctx, tokDecide), &agatev1.DecideRequest{Job: payment(t, "pay-5", "agent-7", 500)})
		if err != nil || re.PolicySnapshot != put.Snapshot.SnapshotId || re.Revision != d.Revision+1 {
			t.Fatalf("re-decide = %v, %v", re, err)
		}
	})
}

func containsStr(s, sub string) bool { return strings.Contains(s, sub) }

func TestReferenceScenarioSQLite(t *testing.T) {
	t.Parallel()
	a := startAgate(t, filepath.Join(t.TempDir(), "agate.db"))
	runReferenceScenario(t, a)
}
