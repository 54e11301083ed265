package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/store/postgres/pgtest"
)

// TestARAP runs the AuthZEN Access Request and Approval Profile's flow, as the README's
// curl example does, against the binary over plain HTTP on SQLite and PostgreSQL:
// evaluate → requestable denial → access request → task pending → approval with the
// CLI → task approved → re-evaluation allowed, and its retry the same, with one
// publish in the evidence, which verifies. And the refusals on the way.
func TestARAP(t *testing.T) {
	t.Parallel()
	for _, b := range []struct {
		name string
		db   func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "agate.db") }},
		{"postgres", func(t *testing.T) string { return pgtest.EmptyURL(t) }},
	} {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			addr := freeAddr(t)
			a := startAgate(t, b.db(t), "--authzen-addr", addr)
			runARAP(t, a, "http://"+addr)
		})
	}
}

type httpAnswer struct {
	code int
	hdr  http.Header
	body map[string]any
}

func runARAP(t *testing.T, a *agate, base string) {
	call := func(method, path, token, key, body string) httpAnswer {
		t.Helper()
		req, err := http.NewRequestWithContext(ctxT(t), method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		out := httpAnswer{code: resp.StatusCode, hdr: resp.Header}
		if err := json.Unmarshal(raw, &out.body); err != nil {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
		}
		return out
	}
	get := func(m map[string]any, path ...string) any {
		var v any = m
		for _, k := range path {
			mm, _ := v.(map[string]any)
			v = mm[k]
		}
		return v
	}
	mustJSON := func(v any) string {
		raw, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(raw)
	}

	// 1. The PEP evaluates: a requestable denial.
	meta := call(http.MethodGet, "/.well-known/authzen-configuration", "", "", "")
	if meta.body["access_request_endpoint"] != base+"/access/v1/requests" {
		t.Fatalf("metadata: %v", meta.body)
	}
	const payment = `{"subject": {"type": "agent", "id": "agent-7"},
	  "action": {"name": "finance.payment.execute"},
	  "resource": {"type": "invoice", "id": "INV-1001", "properties": {"amount": 1250.5, "currency": "EUR"}},
	  "context": {"env": "production"}}`
	den := call(http.MethodPost, "/access/v1/evaluation", tokDecide, "", payment)
	evalID, _ := get(den.body, "context", "evaluation_id").(string)
	expires, _ := get(den.body, "context", "access_request", "expires_at").(string)
	if den.code != http.StatusOK || den.body["decision"] != false || get(den.body, "context", "reason") != "approval_required" ||
		get(den.body, "context", "access_request", "endpoint") != base+"/access/v1/requests" || evalID == "" || expires == "" {
		t.Fatalf("requestable denial: %d %v", den.code, den.body)
	}

	// 2. It submits the access request, with a justification of its own.
	submission := func(env, justification string) string {
		return `{"subject": {"type": "agent", "id": "agent-7"},
		  "action": {"name": "finance.payment.execute"},
		  "resource": {"type": "invoice", "id": "INV-1001", "properties": {"amount": 1250.5, "currency": "EUR"}},
		  "context": {"env": "` + env + `", "business_justification": "` + justification + `"},
		  "denial": {"evaluation_id": "` + evalID + `", "expires_at": "` + expires + `", "reason": "approval_required"}}`
	}
	sub := call(http.MethodPost, "/access/v1/requests", tokDecide, "pay-INV-1001", submission("production", "supplier invoice due today"))
	task, _ := get(sub.body, "task", "id").(string)
	statusURL, _ := get(sub.body, "task", "status_endpoint").(string)
	if sub.code != http.StatusAccepted || get(sub.body, "task", "status") != "pending" || task == "" ||
		statusURL != base+"/access/v1/requests/"+task || sub.hdr.Get("Location") != statusURL {
		t.Fatalf("submission: %d %v", sub.code, sub.body)
	}
	if again := call(http.MethodPost, "/access/v1/requests", tokDecide, "pay-INV-1001", submission("production", "supplier invoice due today")); get(again.body, "task", "id") != task {
		t.Fatalf("a retried submission: %d %v", again.code, again.body)
	}

	// Refusals: the same key with another body; an altered context; malformed JSON; an
	// oversized body; another caller polling the task.
	if r := call(http.MethodPost, "/access/v1/requests", tokDecide, "pay-INV-1001", submission("production", "another story")); r.code != http.StatusConflict ||
		r.body["type"] != "urn:openid:authzen:access-request:error:duplicate_request" || r.body["field"] != "Idempotency-Key" {
		t.Fatalf("the key with another body: %d %v", r.code, r.body)
	}
	if r := call(http.MethodPost, "/access/v1/requests", tokDecide, "pay-2", submission("staging", "x")); r.code != http.StatusBadRequest ||
		r.body["type"] != "urn:openid:authzen:access-request:error:invalid_denial_binding" {
		t.Fatalf("an altered context: %d %v", r.code, r.body)
	}
	if r := call(http.MethodPost, "/access/v1/requests", tokDecide, "pay-3", `{"subject": `); r.code != http.StatusBadRequest || r.body["field"] != "body" {
		t.Fatalf("malformed JSON: %d %v", r.code, r.body)
	}
	if r := call(http.MethodPost, "/access/v1/requests", tokDecide, "pay-4", `{"pad": "`+strings.Repeat("x", 5<<20)+`"}`); r.code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized: %d %v", r.code, r.body)
	}
	other := call(http.MethodGet, "/access/v1/requests/"+task, tokDispatch, "", "")
	missing := call(http.MethodGet, "/access/v1/requests/arq_nosuchtask", tokDispatch, "", "")
	if other.code != http.StatusNotFound || other.body["type"] != missing.body["type"] || other.body["reason"] != missing.body["reason"] || missing.code != http.StatusNotFound {
		t.Fatalf("another caller polling: %d %v; a missing task: %v", other.code, other.body, missing.body)
	}

	// 3. The task is pending; an approver approves with the CLI.
	if p := call(http.MethodGet, "/access/v1/requests/"+task, tokDecide, "", ""); get(p.body, "task", "status") != "pending" || p.body["result"] != nil {
		t.Fatalf("pending: %d %v", p.code, p.body)
	}
	cli := exec.Command(agateBinary(t), "approvals", "approve", "--server", a.grpcAddr, "--plaintext", "--reason", "invoice matches the order", task)
	cli.Env = append(os.Environ(), "AGATE_TOKEN="+tokBob)
	if out, err := cli.CombinedOutput(); err != nil {
		t.Fatalf("agate approvals approve: %v\n%s", err, out)
	}
	done := call(http.MethodGet, "/access/v1/requests/"+task, tokDecide, "", "")
	approval, _ := get(done.body, "result", "approval").(map[string]any)
	if done.code != http.StatusOK || get(done.body, "task", "status") != "approved" || get(done.body, "result", "mode") != "reevaluate" ||
		approval == nil || approval["id"] != task {
		t.Fatalf("approved: %d %v", done.code, done.body)
	}

	// 4. The PEP re-evaluates with the approval: another binding is refused, the same
	// one allowed, and a retry answers the same.
	reeval := func(resource, env string) httpAnswer {
		return call(http.MethodPost, "/access/v1/evaluation", tokDispatch, "", `{"subject": {"type": "agent", "id": "agent-7"},
		  "action": {"name": "finance.payment.execute"},
		  "resource": {"type": "invoice", "id": "`+resource+`", "properties": {"amount": 1250.5, "currency": "EUR"}},
		  "context": {"env": "`+env+`", "approval": `+mustJSON(approval)+`}}`)
	}
	if r := reeval("INV-1002", "production"); r.code != http.StatusOK || r.body["decision"] != false || get(r.body, "context", "reason") != "out_of_scope" {
		t.Fatalf("another binding: %d %v", r.code, r.body)
	}
	for i := range 2 {
		r := reeval("INV-1001", "production")
		if r.code != http.StatusOK || r.body["decision"] != true || get(r.body, "context", "approval", "id") != task {
			t.Fatalf("re-evaluation %d: %d %v", i, r.code, r.body)
		}
	}

	// 5. The evidence: one publish, by the dispatcher, and it verifies.
	ev, err := a.evidence().GetEvidence(as(ctxT(t), tokAudit), &agatev1.GetEvidenceRequest{JobId: task})
	if err != nil {
		t.Fatal(err)
	}
	publishes := 0
	for _, e := range ev.GetEvents() {
		if e.GetKind() == "publish" {
			publishes++
			if e.GetPrincipal() != "dispatcher" {
				t.Errorf("publish by %q", e.GetPrincipal())
			}
		}
	}
	if publishes != 1 || ev.GetSummary().GetStatus() != "approved_and_published" || ev.GetSummary().GetApprovedBy() != "bob@example.com" {
		t.Fatalf("evidence: %d publishes; %v", publishes, ev.GetSummary())
	}
	ver, err := a.evidence().VerifyEvidence(as(ctxT(t), tokAudit), &agatev1.VerifyEvidenceRequest{})
	if err != nil || !ver.GetOk() {
		t.Fatalf("VerifyEvidence: %v %v", ver, err)
	}
}

// TestReadmeARAP runs the README's ARAP walkthrough, unchanged but for the addresses and
// the binary's path, with bash, curl and jq, against the binary.
func TestReadmeARAP(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the walkthrough needs %s", tool)
		}
	}
	readme := readFile(t, filepath.Join(root, "README.md"))
	start, end := strings.Index(readme, "<!-- arap-walkthrough -->"), strings.Index(readme, "<!-- /arap-walkthrough -->")
	if start < 0 || end < start {
		t.Fatal("README.md has no <!-- arap-walkthrough --> section")
	}
	var script strings.Builder
	for _, block := range strings.Split(readme[start:end], "```sh\n")[1:] {
		script.WriteString(strings.SplitN(block, "```", 2)[0])
	}
	addr := freeAddr(t)
	a := startAgate(t, filepath.Join(t.TempDir(), "agate.db"), "--authzen-addr", addr)
	s := strings.NewReplacer("127.0.0.1:7072", addr, "127.0.0.1:7070", a.grpcAddr, "./bin/agate", agateBinary(t)).Replace(script.String())
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", s)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("walkthrough: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var allowed int
	for _, l := range lines {
		if strings.HasPrefix(l, `{"decision":true,"approval":"arq_`) {
			allowed++
		}
	}
	if !strings.Contains(string(out), `"reason":"approval_required"`) || !strings.Contains(string(out), `"pending"`) || allowed != 2 {
		t.Fatalf("walkthrough output:\n%s", out)
	}
}
