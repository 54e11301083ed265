package e2e

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/agate-pdp/agate/canonical"
)

// walkthroughBlocks returns the shell blocks of the README's grpcurl walkthrough.
func walkthroughBlocks(t *testing.T) []string {
	t.Helper()
	readme := readFile(t, filepath.Join(root, "README.md"))
	start := strings.Index(readme, "<!-- walkthrough -->")
	end := strings.Index(readme, "<!-- /walkthrough -->")
	if start < 0 || end < start {
		t.Fatal("README.md has no <!-- walkthrough --> section")
	}
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(readme[start:end], -1) {
		blocks = append(blocks, m[1])
	}
	return blocks
}

// TestReadmeWalkthrough runs the README's grpcurl commands, unchanged but for the
// server's address, against the real binary and checks what they print.
func TestReadmeWalkthrough(t *testing.T) {
	t.Parallel()
	blocks := walkthroughBlocks(t)
	if len(blocks) != 6 {
		t.Fatalf("walkthrough has %d shell blocks, this test checks 6", len(blocks))
	}
	fn := strings.SplitN(blocks[0], "\n", 2)[0]
	if !strings.HasPrefix(fn, "grpcurl()") {
		t.Fatalf("first walkthrough line must define grpcurl, got %q", fn)
	}
	a := startAgate(t, filepath.Join(t.TempDir(), "agate.db"))

	run := func(i int) string {
		t.Helper()
		script := strings.ReplaceAll(blocks[i], "127.0.0.1:7070", a.grpcAddr)
		if i > 0 {
			script = fn + "\n" + script
		}
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("walkthrough block %d failed: %v\n%s\n%s", i, err, out, stderr)
		}
		return string(out)
	}
	decode := func(s string) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, s)
		}
		return m
	}

	list := run(0)
	for _, svc := range []string{"agate.v1.DecisionService", "agate.v1.PolicyService", "agate.v1.EvidenceService", "grpc.health.v1.Health"} {
		if !strings.Contains(list, svc) {
			t.Errorf("list does not show %s:\n%s", svc, list)
		}
	}
	if desc := run(1); !strings.Contains(desc, "rpc Decide") {
		t.Errorf("describe does not show Decide:\n%s", desc)
	}

	hashInReadme := regexp.MustCompile(`sha256:[0-9a-f]{64}`).FindString(blocks[3])
	want, err := canonical.JobHash("finance.payment.execute", "agent-7", map[string]any{"env": "production"},
		[]byte(`{"amount":1250.5,"currency":"EUR","invoice":"INV-1001"}`))
	if err != nil || hashInReadme != want {
		t.Fatalf("README's hash %s, computed %s (%v)", hashInReadme, want, err)
	}
	d := decode(run(2))
	if d["decision"] != "DECISION_REQUIRE_HUMAN" || d["job_hash"] != want || d["status"] != "JOB_STATUS_PENDING_APPROVAL" ||
		d["rule_id"] != "require-approval-prod-finance" {
		t.Fatalf("Decide printed %v", d)
	}
	if ap := decode(run(3)); ap["status"] != "JOB_STATUS_APPROVED" {
		t.Fatalf("Approve printed %v", ap)
	}
	pub := decode(run(4))
	if job, _ := pub["job"].(map[string]any); job["status"] != "JOB_STATUS_APPROVED_AND_PUBLISHED" || job["attempt"] != float64(1) {
		t.Fatalf("Publish printed %v", pub)
	}
	got := decode(run(5))
	job, _ := got["job"].(map[string]any)
	approvals, _ := job["approvals"].([]any)
	if job["status"] != "JOB_STATUS_APPROVED_AND_PUBLISHED" || len(approvals) != 1 {
		t.Fatalf("GetJob printed %v", got)
	}
	if ap, _ := approvals[0].(map[string]any); ap["approved_by"] != "alice@example.com" || ap["approved_role"] != "finance-approver" {
		t.Fatalf("approval = %v", approvals[0])
	}
}
