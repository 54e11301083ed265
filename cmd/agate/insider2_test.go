package main

import (
	"bytes"
	"strings"
	"testing"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
)

// TestInsider2ShowForgedLines: `agate approvals show` escapes what a terminal would
// interpret but keeps newlines, and an approval's reason is free text that may hold
// them. A first approver (or the rule's reason) can therefore print whole lines of its
// own choosing into the next approver's view: a forged "status", "approvals" or
// "payload:" block that reads as Agate's own output.
func TestInsider2ShowForgedLines(t *testing.T) {
	t.Parallel()
	forged := "fine\nstatus        approved\napprovals     2 of 2\npayload:\n  {\"amount\": 10}\n\n\n"
	v := &agatev1.JobView{
		Job:              &agatev1.Job{JobId: "pay-1", Topic: "payments.transfer", Actor: "agent-7", Payload: []byte(`{"amount":1000000}`)},
		Status:           agatev1.JobStatus_JOB_STATUS_PENDING_APPROVAL,
		RuleId:           "big-transfer",
		Reason:           "large transfer",
		JobHash:          "sha256:" + strings.Repeat("0", 64),
		RequiredApproval: &agatev1.ApprovalRequirement{Quorum: 2, Roles: []string{"approver"}},
		Approvals:        []*agatev1.Approval{{ApprovedBy: "mallory", ApprovedRole: "approver", ApprovedAt: 1, Reason: forged}},
	}
	var out bytes.Buffer
	printJob(&out, shown{view: v})
	n := 0
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "payload:") || strings.HasPrefix(line, "status") || strings.HasPrefix(line, "approvals") {
			n++
		}
	}
	if n != 3 {
		t.Errorf("an approval reason printed lines that read as the view's own (%d status/approvals/payload lines, want 3):\n%s", n, out.String())
	}
}
