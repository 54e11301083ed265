package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
)

// httpWalkthroughBlocks returns the curl blocks of the README's HTTP/JSON walkthrough.
func httpWalkthroughBlocks(t *testing.T) []string {
	t.Helper()
	readme := readFile(t, filepath.Join(root, "README.md"))
	start := strings.Index(readme, "<!-- http-walkthrough -->")
	end := strings.Index(readme, "<!-- /http-walkthrough -->")
	if start < 0 || end < start {
		t.Fatal("README.md has no <!-- http-walkthrough --> section")
	}
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(readme[start:end], -1) {
		blocks = append(blocks, m[1])
	}
	return blocks
}

// TestHTTPAPIReadmeWalkthrough starts the binary with --http-api-addr and runs the
// README's curl walkthrough, unchanged but for the address: Decide, Approve, Publish,
// GetJob. Then, with net/http as curl would, a caller without credentials and an
// auditor's evidence call.
func TestHTTPAPIReadmeWalkthrough(t *testing.T) {
	t.Parallel()
	blocks := httpWalkthroughBlocks(t)
	if len(blocks) != 4 {
		t.Fatalf("HTTP walkthrough has %d shell blocks, this test checks 4", len(blocks))
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed; the server package's tests cover the HTTP API with net/http")
	}
	addr := freeAddr(t)
	a := startAgate(t, filepath.Join(t.TempDir(), "agate.db"), "--http-api-addr", addr)

	run := func(i int) map[string]any {
		t.Helper()
		script := strings.ReplaceAll(blocks[i], "127.0.0.1:7073", addr)
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("HTTP walkthrough block %d failed: %v\n%s", i, err, out)
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("block %d printed no JSON object: %v\n%s", i, err, out)
		}
		for _, k := range []string{"jobHash", "jobId", "policySnapshot", "ruleId"} {
			if strings.Contains(string(out), `"`+k+`"`) {
				t.Errorf("block %d: camelCase key %s in %s", i, k, out)
			}
		}
		return m
	}
	const hash = "sha256:f3a95a5b4da997d8b847e422f1491998f74cd88d6c695dc71af46edbbfb59242"
	if d := run(0); d["decision"] != "DECISION_REQUIRE_HUMAN" || d["job_hash"] != hash ||
		d["status"] != "JOB_STATUS_PENDING_APPROVAL" || d["rule_id"] != "require-approval-prod-finance" {
		t.Fatalf("Decide printed %v", d)
	}
	if ap := run(1); ap["status"] != "JOB_STATUS_APPROVED" {
		t.Fatalf("Approve printed %v", ap)
	}
	if job, _ := run(2)["job"].(map[string]any); job["status"] != "JOB_STATUS_APPROVED_AND_PUBLISHED" || job["attempt"] != float64(1) {
		t.Fatalf("Publish printed %v", job)
	}
	got := run(3)
	job, _ := got["job"].(map[string]any)
	approvals, _ := job["approvals"].([]any)
	if job["status"] != "JOB_STATUS_APPROVED_AND_PUBLISHED" || len(approvals) != 1 {
		t.Fatalf("GetJob printed %v", got)
	}
	if ap, _ := approvals[0].(map[string]any); ap["approved_by"] != "alice@example.com" || ap["approved_role"] != "finance-approver" {
		t.Fatalf("approval = %v", approvals[0])
	}

	post := func(method, token, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, "http://"+addr+"/"+method, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s: %d %s", method, resp.StatusCode, raw)
		}
		return resp.StatusCode, out
	}
	code, out := post("agate.v1.DecisionService/GetJob", "", `{"job_id": "pay-0002"}`)
	if code != http.StatusUnauthorized || out["code"] != "unauthenticated" {
		t.Errorf("without credentials: %d %v", code, out)
	}
	// The dispatcher has no standing on a job pending approval: it hears what it hears
	// of a job that does not exist.
	code, out = post("agate.v1.DecisionService/Decide", tokDecide, `{"job": {"job_id": "pay-0003",
	  "topic": "finance.payment.execute", "actor": "agent-7", "labels": {"env": "production"}}}`)
	if code != http.StatusOK || out["status"] != "JOB_STATUS_PENDING_APPROVAL" {
		t.Fatalf("Decide pay-0003: %d %v", code, out)
	}
	code, pending := post("agate.v1.DecisionService/GetJob", tokDispatch, `{"job_id": "pay-0003"}`)
	_, missing := post("agate.v1.DecisionService/GetJob", tokDispatch, `{"job_id": "pay-0004"}`)
	if code != http.StatusNotFound || pending["code"] != "not_found" ||
		strings.ReplaceAll(fmt.Sprint(pending), "pay-0003", "pay-0004") != fmt.Sprint(missing) {
		t.Errorf("no standing: %d %v; no job: %v", code, pending, missing)
	}
	code, out = post("agate.v1.EvidenceService/GetEvidence", tokAudit, `{"job_id": "pay-0002"}`)
	summary, _ := out["summary"].(map[string]any)
	if code != http.StatusOK || summary["status"] != "approved_and_published" || summary["approved_by"] != "alice@example.com" {
		t.Errorf("GetEvidence: %d %v", code, out)
	}
	code, out = post("agate.v1.EvidenceService/VerifyEvidence", tokAudit, `{}`)
	if code != http.StatusOK {
		t.Errorf("VerifyEvidence: %d %v", code, out)
	}
	// What the HTTP API did is the job gRPC sees.
	res, err := a.decision().GetJob(as(ctxT(t), tokAudit), &agatev1.GetJobRequest{JobId: "pay-0002"})
	if err != nil || res.GetJob().GetStatus() != agatev1.JobStatus_JOB_STATUS_APPROVED_AND_PUBLISHED {
		t.Errorf("GetJob over gRPC: %v, %v", res, err)
	}
}
