package evidence

import (
	"slices"
	"testing"
)

// referenceSummary is the compliance guide's reference event.
func referenceSummary() Summary {
	return Summary{
		JobID: "job_4ab2", TraceID: "trc_91ff", Decision: "require_human", ApprovalRequired: true,
		PolicySnapshot: "snap_2026_04_01_17", JobHash: "sha256:8c4f...", ApprovedBy: "alice@example.com",
		ApprovedRole: "admin", ApprovedAt: 1775037723000000, Status: "approved_and_published",
		Topic: "finance.payment.execute", Actor: "agent-7", Attempt: 1,
	}
}

func TestCheckSummaryMissingField(t *testing.T) {
	t.Parallel()
	cases := []struct {
		field string
		clear func(*Summary)
	}{
		{"job_id", func(s *Summary) { s.JobID = "" }},
		{"trace_id", func(s *Summary) { s.TraceID = "" }},
		{"decision", func(s *Summary) { s.Decision = "" }},
		{"policy_snapshot", func(s *Summary) { s.PolicySnapshot = "" }},
		{"job_hash", func(s *Summary) { s.JobHash = "" }},
		{"status", func(s *Summary) { s.Status = "" }},
		{"approved_by", func(s *Summary) { s.ApprovedBy = "" }},
		{"approved_role", func(s *Summary) { s.ApprovedRole = "" }},
		{"approved_at", func(s *Summary) { s.ApprovedAt = 0 }},
	}
	if got := CheckSummary(referenceSummary()); got != nil {
		t.Fatalf("reference event: missing %v", got)
	}
	for _, c := range cases {
		t.Run(c.field, func(t *testing.T) {
			t.Parallel()
			s := referenceSummary()
			c.clear(&s)
			if got := CheckSummary(s); !slices.Equal(got, []string{c.field}) {
				t.Fatalf("missing %v, want [%s]", got, c.field)
			}
		})
	}
}

// TestCheckSummaryApprover: the approver is required exactly when an approval-gated job
// has been approved.
func TestCheckSummaryApprover(t *testing.T) {
	t.Parallel()
	noApprover := func(required bool, status string) Summary {
		s := referenceSummary()
		s.ApprovalRequired, s.Status = required, status
		s.ApprovedBy, s.ApprovedRole, s.ApprovedAt = "", "", 0
		return s
	}
	all := []string{"approved_by", "approved_role", "approved_at"}
	cases := []struct {
		required bool
		status   string
		want     []string
	}{
		{true, "approved", all},
		{true, "approved_and_published", all},
		{true, "succeeded", all},
		{true, "failed", all},
		{true, "pending_approval", nil},
		{true, "rejected", nil},
		{true, "expired", nil},
		{true, "cancelled", nil},
		{true, "conflict", nil},
		{false, "allowed_and_published", nil},
		{false, "succeeded", nil},
		{false, "denied", nil},
	}
	for _, c := range cases {
		if got := CheckSummary(noApprover(c.required, c.status)); !slices.Equal(got, c.want) {
			t.Errorf("approval_required=%v status=%s: missing %v, want %v", c.required, c.status, got, c.want)
		}
	}
	empty := CheckSummary(Summary{})
	if want := []string{"job_id", "trace_id", "decision", "policy_snapshot", "job_hash", "status"}; !slices.Equal(empty, want) {
		t.Errorf("empty summary: missing %v, want %v", empty, want)
	}
}
