package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
)

// TestAuthZEN runs the README's AuthZEN example against the binary with net/http, as
// curl would: discovery, a payment that needs a human, a batch, a refusal; and checks
// that evaluating stored no job.
func TestAuthZEN(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	a := launchAgate(t, filepath.Join(t.TempDir(), "agate.db"), "--authzen-addr", addr)
	a.waitServing(t)
	base := "http://" + addr

	call := func(method, path, token, body string) (int, http.Header, map[string]any) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctxT(t), method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Request-ID", "req-"+path)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
		}
		if got := resp.Header.Get("X-Request-ID"); got != "req-"+path {
			t.Errorf("%s: X-Request-ID %q", path, got)
		}
		return resp.StatusCode, resp.Header, out
	}

	code, _, meta := call(http.MethodGet, "/.well-known/authzen-configuration", "", "")
	if code != http.StatusOK || meta["policy_decision_point"] != base || meta["access_evaluation_endpoint"] != base+"/access/v1/evaluation" {
		t.Fatalf("metadata: %d %v", code, meta)
	}

	payment := `{"subject": {"type": "agent", "id": "agent-7"},
	  "action": {"name": "finance.payment.execute"},
	  "resource": {"type": "invoice", "id": "INV-1001", "properties": {"amount": 1250.5, "currency": "EUR"}},
	  "context": {"env": "production"}}`
	code, _, out := call(http.MethodPost, "/access/v1/evaluation", tokDecide, payment)
	ctx, _ := out["context"].(map[string]any)
	appr, _ := ctx["approval_required"].(map[string]any)
	if code != http.StatusOK || out["decision"] != false || ctx["policy_decision"] != "require_human" ||
		ctx["rule_id"] != "require-approval-prod-finance" || appr == nil || !strings.HasPrefix(ctx["snapshot_id"].(string), "snap_") {
		t.Fatalf("production payment: %d %v", code, out)
	}

	batch := `{"subject": {"type": "agent", "id": "agent-7"}, "action": {"name": "finance.payment.execute"},
	  "resource": {"type": "invoice", "id": "INV-1001"},
	  "evaluations": [{"context": {"env": "staging"}}, {"context": {"env": "production"}}, {"context": {"env": "moon"}}]}`
	code, _, out = call(http.MethodPost, "/access/v1/evaluations", tokDecide, batch)
	evs, _ := out["evaluations"].([]any)
	if code != http.StatusOK || len(evs) != 3 {
		t.Fatalf("batch: %d %v", code, out)
	}
	want := []bool{true, false, false}
	for i, e := range evs {
		if e.(map[string]any)["decision"] != want[i] {
			t.Errorf("batch item %d: %v, want decision %v", i, e, want[i])
		}
	}
	if errCtx := evs[2].(map[string]any)["context"].(map[string]any)["error"].(map[string]any); errCtx["field"] != "evaluations[2].context.env" {
		t.Errorf("an env off the schema's enum: %v", errCtx)
	}

	code, hdr, out := call(http.MethodPost, "/access/v1/evaluation", "", payment)
	if code != http.StatusUnauthorized || out["reason"] != "UNAUTHENTICATED" || hdr.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("no token: %d %v", code, out)
	}
	if code, _, out := call(http.MethodPost, "/access/v1/evaluation", tokDispatch, payment); code != http.StatusForbidden || out["reason"] != "ROLE_NOT_ALLOWED" {
		t.Fatalf("dispatch token: %d %v", code, out)
	}

	// Evaluating is a query: the approval queue is still empty.
	list, err := a.decision().ListPendingApprovals(as(ctxT(t), tokAudit), &agatev1.ListPendingApprovalsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetPendingApprovals()) != 0 {
		t.Fatalf("evaluations stored jobs: %v", list.GetPendingApprovals())
	}
}
