package authzen_test

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"time"

	"context"
	"github.com/agate-pdp/agate/authzen"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/store"
)

// approvedTask submits edit as tok-pep, has the approver approve it, and returns the
// task id and the approval its result carries.
func (a *arapServer) approvedTask(t *testing.T, key string) (string, any) {
	t.Helper()
	task := a.submit(t, "tok-pep", key, a.denial(t, "tok-pep", edit))
	if _, err := a.svc.Approve(context.Background(), a.ids["approver"], jobs.ApproveRequest{JobID: task, JobHash: a.job(t, task).Hash}); err != nil {
		t.Fatal(err)
	}
	code, st := a.call(t, http.MethodGet, "/access/v1/requests/"+task, "tok-pep", "", nil)
	res, _ := st["result"].(map[string]any)
	if code != http.StatusOK || res == nil {
		t.Fatalf("the submitter's status: %d %v", code, st)
	}
	return task, res["approval"]
}

// reEdit is edit as a re-evaluation presenting approval.
func reEdit(approval any) map[string]any {
	re := map[string]any{}
	for k, v := range edit {
		re[k] = v
	}
	re["context"] = map[string]any{"device": "managed", "approval": approval}
	return re
}

// TestInsiderRetryAfterPolicyChangeStillAllowed: once a task is published, a
// re-evaluation of the same binding keeps answering "decision": true after the policy
// changed — even to a policy that now denies the action outright. The README promises
// approval_expired "after the policy changed", and the issue "decision: true only for
// the same binding (same canonical content, same snapshot, within ttl)". Publish's
// AlreadyPublished branch checks neither the snapshot nor the policy, and the handler
// checks only the ttl, so a revoked permission stays enforceable for the whole ttl. The
// draft: "The PDP MUST evaluate the new request using current policy" (§8).
func TestInsiderRetryAfterPolicyChangeStillAllowed(t *testing.T) {
	a := newARAPServer(t)
	_, approval := a.approvedTask(t, "k")
	if code, out := a.call(t, http.MethodPost, "/access/v1/evaluation", "tok-pep", "", reEdit(approval)); code != http.StatusOK || out["decision"] != true {
		t.Fatalf("the first re-evaluation: %d %v", code, out)
	}
	// The policy owner revokes: edits are now denied outright.
	src, err := os.ReadFile("testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	deny := strings.Replace(string(src), "decision: require_human\n    reason: edits need an editor's approval\n    approval: {roles: [admin], quorum: 1, ttl: 1h}",
		"decision: deny\n    reason: edits are frozen", 1)
	if deny == string(src) {
		t.Fatal("could not rewrite the policy")
	}
	file := filepath.Join(t.TempDir(), "frozen.yaml")
	if err := os.WriteFile(file, []byte(deny), 0o600); err != nil {
		t.Fatal(err)
	}
	a.putPolicy(t, file)
	if code, out := a.call(t, http.MethodPost, "/access/v1/evaluation", "tok-pep", "", edit); code != http.StatusOK || out["decision"] != false {
		t.Fatalf("the new policy does not deny: %d %v", code, out)
	}
	code, out := a.call(t, http.MethodPost, "/access/v1/evaluation", "tok-pep", "", reEdit(approval))
	if code != http.StatusOK || out["decision"] != false {
		t.Fatalf("after the policy changed to deny, the re-evaluation still allows: %d %v", code, out)
	}
}

// TestInsiderAllowReplayedByAnotherDispatcher: once a task is published by its
// submitter, any other principal holding dispatch that presents the same approval gets
// "decision": true — a second enforcement — and nothing on any chain says it did: the
// job's evidence shows one Publish, by the first PEP. A retry is the same caller's; an
// answer of true to another principal is an enforcement the evidence does not prove,
// and the draft binds approval results to the requester ("Decision and Binding
// Integrity": bind to the Subject, Resource, Action, Context, task, and requester).
func TestInsiderAllowReplayedByAnotherDispatcher(t *testing.T) {
	a := newARAPServer(t)
	task, approval := a.approvedTask(t, "k")
	if code, out := a.call(t, http.MethodPost, "/access/v1/evaluation", "tok-pep", "", reEdit(approval)); code != http.StatusOK || out["decision"] != true {
		t.Fatalf("the submitter's re-evaluation: %d %v", code, out)
	}
	before := len(a.events(t, task)) + len(a.events(t, evidence.PrincipalChain("other-pep")))
	code, out := a.call(t, http.MethodPost, "/access/v1/evaluation", "tok-other", "", reEdit(approval))
	after := len(a.events(t, task)) + len(a.events(t, evidence.PrincipalChain("other-pep")))
	if code == http.StatusOK && out["decision"] == true && after == before {
		t.Fatalf("another dispatcher was allowed to enforce the published task, and no evidence records it (%d publish events on %s, all by the submitter)",
			count(a.events(t, task), evidence.KindPublish), task)
	}
}

// TestInsiderAmbiguousJSONDecidesOtherContent: Go's encoding/json matches member names
// case-insensitively and keeps the last of duplicate members, and stripMachinery
// re-marshals a context that holds the approval, silently merging duplicates. So a body
// in which a case-sensitive, first-wins or strict JSON reader (the PEP, the agent's
// tool, most languages) sees one subject, action or context is decided — and, with an
// approval, enforced and published — as another. A plain evaluation with a duplicate
// context member is refused (canonical JSON refuses duplicates); these must be too.
func TestInsiderAmbiguousJSONDecidesOtherContent(t *testing.T) {
	a := newARAPServer(t)
	_, approval := a.approvedTask(t, "k")
	appr := string(mustJSON(t, approval))
	const res = `"resource": {"type": "document", "id": "doc-1"}`
	for _, c := range []struct{ name, body string }{
		// approved for alice; a case-sensitive reader sees mallory (and ignores "ID").
		{"case-variant subject id", `{"subject": {"type": "user", "id": "mallory", "ID": "alice"}, "action": {"name": "can_edit"}, ` + res +
			`, "context": {"device": "managed", "approval": ` + appr + `}}`},
		// a first-wins reader acts on mallory's subject.
		{"duplicate subject", `{"subject": {"type": "user", "id": "mallory"}, "action": {"name": "can_edit"}, ` + res +
			`, "context": {"device": "managed", "approval": ` + appr + `}, "subject": {"type": "user", "id": "alice"}}`},
		// a first-wins reader sees an unmanaged device.
		{"duplicate context member", `{"subject": {"type": "user", "id": "alice"}, "action": {"name": "can_edit"}, ` + res +
			`, "context": {"device": "unmanaged", "device": "managed", "approval": ` + appr + `}}`},
		// a case-sensitive reader sees another action.
		{"case-variant action name", `{"subject": {"type": "user", "id": "alice"}, "action": {"name": "delete_all", "Name": "can_edit"}, ` + res +
			`, "context": {"device": "managed", "approval": ` + appr + `}}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out := a.call(t, http.MethodPost, "/access/v1/evaluation", "tok-pep", "", c.body)
			if code == http.StatusOK && out["decision"] == true {
				t.Fatalf("an ambiguous body was allowed as the approved job: %v", out)
			}
		})
	}
	// Without an approval: a plain evaluation that reads "delete_all" to a
	// case-sensitive reader is answered for can_read, which the policy allows.
	code, out := a.call(t, http.MethodPost, "/access/v1/evaluation", "tok-pep", "",
		`{"subject": {"type": "user", "id": "alice"}, "action": {"name": "delete_all", "NAME": "can_read"}, `+res+`}`)
	if code == http.StatusOK && out["decision"] == true {
		t.Fatalf("a case-variant action name was decided as the other spelling: %v", out)
	}
}

// TestInsiderStaleRetryWithOtherBodyUnrecorded: reusing an Idempotency-Key with
// another body is JOB_HASH_MISMATCH, recorded on the task's chain while the denial is
// fresh (Decide records it). Once the denial is stale, the handler's retried path
// answers the same duplicate_request itself and records nothing: a refusal of the
// task's submitter, who has standing on it, left out of the evidence.
func TestInsiderStaleRetryWithOtherBodyUnrecorded(t *testing.T) {
	a := newARAPServer(t)
	sub := a.denial(t, "tok-pep", edit)
	task := a.submit(t, "tok-pep", "k", sub)
	other := map[string]any{}
	for k, v := range sub {
		other[k] = v
	}
	other["requested_access"] = map[string]any{"requested_until": "2099-01-01T00:00:00Z"}

	// Fresh: refused and recorded.
	before := count(a.events(t, task), evidence.KindConflict)
	if code, out := a.call(t, http.MethodPost, "/access/v1/requests", "tok-pep", "k", other); code != http.StatusConflict {
		t.Fatalf("fresh key reuse: %d %v", code, out)
	}
	fresh := count(a.events(t, task), evidence.KindConflict) - before
	if fresh != 1 {
		t.Fatalf("fresh key reuse recorded %d conflict events", fresh)
	}
	// Stale: the same refusal.
	a.clock.advance(authzenDenialTTLPlus)
	before = count(a.events(t, task), evidence.KindConflict)
	code, out := a.call(t, http.MethodPost, "/access/v1/requests", "tok-pep", "k", other)
	if code != http.StatusConflict || out["reason"] != "JOB_HASH_MISMATCH" {
		t.Fatalf("stale key reuse: %d %v", code, out)
	}
	if n := count(a.events(t, task), evidence.KindConflict) - before; n != 1 {
		t.Fatalf("stale key reuse with another body was refused but %d events record it", n)
	}
}

// authzenDenialTTLPlus moves past a denial's expires_at and its clock-skew tolerance,
// well within the approval ttl.
const authzenDenialTTLPlus = authzen.DefaultDenialTTL + 2*time.Minute

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestInsiderBatchDefaultsMultiplyBody: an item of an Access Evaluations request that
// omits context takes the top-level one, and each item flattens, marshals and hashes
// it again. So a body well under the 4 MiB limit — one large top-level context and
// 1000 empty items — makes the handler process 1000 times the body, and a caller with
// decide keeps a core busy until the call's time limit ends it (504), where the same
// bytes cost one evaluation over gRPC. The body limit must bound the work: refuse such
// a batch, or evaluate it within the call's time.
func TestInsiderBatchDefaultsMultiplyBody(t *testing.T) {
	srv, _, _ := serve(t, func(c *authzen.Config) { c.MaxCallTime = 5 * time.Second }, true)
	var b strings.Builder
	b.WriteString(`{"subject": {"type": "user", "id": "alice"}, "action": {"name": "can_read"}, "resource": {"type": "document", "id": "doc-1"}, "context": {`)
	for n := 0; b.Len() < 300<<10; n++ {
		if n > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"k%d":1`, n)
	}
	b.WriteString(`}, "evaluations": [{}` + strings.Repeat(`,{}`, 999) + `]}`)
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/access/v1/evaluations", strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer tok-decide")
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode == http.StatusGatewayTimeout || resp.StatusCode >= 500 {
		t.Fatalf("a %d-byte batch ran %v until the call's limit ended it: %d", b.Len(), time.Since(start).Round(time.Millisecond), resp.StatusCode)
	}
}

// TestInsiderExpiredRetryRefusalUnrecorded: once a published task's ttl has passed, the
// handler itself answers a re-evaluation "approval_expired" without calling into the
// job service, so the refusal of a dispatcher — who has Publish's standing on the job —
// is on no chain, unlike the same refusal of an unpublished task (Publish records the
// expiry) or of a mismatched hash (a conflict event).
func TestInsiderExpiredRetryRefusalUnrecorded(t *testing.T) {
	a := newARAPServer(t)
	task, approval := a.approvedTask(t, "k")
	if code, out := a.call(t, http.MethodPost, "/access/v1/evaluation", "tok-pep", "", reEdit(approval)); code != http.StatusOK || out["decision"] != true {
		t.Fatalf("the first re-evaluation: %d %v", code, out)
	}
	a.clock.advance(2 * time.Hour)
	// The publisher's retry is approval_expired; another dispatcher's is refused too,
	// as expired or as not its enforcement to repeat (approval_unverifiable), whichever
	// the job service finds first. Either way the refusal is on a chain.
	for _, c := range []struct {
		token, principal string
		reasons          []string
	}{
		{"tok-pep", "pep-arap", []string{"approval_expired"}},
		{"tok-other", "other-pep", []string{"approval_expired", "approval_unverifiable"}},
	} {
		before := len(a.events(t, task)) + len(a.events(t, evidence.PrincipalChain(c.principal)))
		code, out := a.call(t, http.MethodPost, "/access/v1/evaluation", c.token, "", reEdit(approval))
		ctx, _ := out["context"].(map[string]any)
		if code != http.StatusOK || out["decision"] != false || !slices.Contains(c.reasons, fmt.Sprint(ctx["reason"])) {
			t.Fatalf("%s after the ttl: %d %v", c.principal, code, out)
		}
		if after := len(a.events(t, task)) + len(a.events(t, evidence.PrincipalChain(c.principal))); after == before {
			t.Fatalf("%s's re-evaluation after the ttl was refused, and no event records it", c.principal)
		}
	}
}

// TestInsiderRowWriteExtendsPublishedApproval: after a task is published, the only
// thing that ends its re-evaluations' "decision": true is the job row's expires_at,
// which the handler trusts as stored. Neither the stored-job check nor the evidence
// covers it (no event records the deadline, though the decision event's time and the
// snapshot's rule give it), so whoever can write the row makes the approval enforceable
// indefinitely, and no answer after the real ttl leaves a trace.
func TestInsiderRowWriteExtendsPublishedApproval(t *testing.T) {
	a := newARAPServer(t)
	task, approval := a.approvedTask(t, "k")
	if code, out := a.call(t, http.MethodPost, "/access/v1/evaluation", "tok-pep", "", reEdit(approval)); code != http.StatusOK || out["decision"] != true {
		t.Fatalf("the first re-evaluation: %d %v", code, out)
	}
	err := a.st.ReadWrite(context.Background(), func(ctx context.Context, tx store.Tx) error {
		j, err := tx.GetJob(ctx, task, true)
		if err != nil {
			return err
		}
		j.ExpiresAt += (365 * 24 * time.Hour).Microseconds()
		return tx.UpdateJob(ctx, j)
	})
	if err != nil {
		t.Fatal(err)
	}
	a.clock.advance(2 * time.Hour) // the rule's ttl is 1h
	code, out := a.call(t, http.MethodPost, "/access/v1/evaluation", "tok-pep", "", reEdit(approval))
	if code == http.StatusOK && out["decision"] == true {
		t.Fatalf("an hour past the approval's ttl, a rewritten expires_at still allows: %v", out)
	}
}

// TestInsiderRequestIDUnbounded: X-Request-ID is taken as sent, of any length (up to
// the server's 1 MB of headers), echoed in the header and in every problem, and
// written into the request's log line: a caller — authenticated or not — makes each
// refused request cost a log line of its choosing and size. An id is a correlation
// token: one that is too long or not a plain token should be replaced, not kept.
func TestInsiderRequestIDUnbounded(t *testing.T) {
	srv, _, _ := serve(t, nil, true)
	id := strings.Repeat("A", 32<<10)
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/access/v1/evaluation", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-ID", id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if got := resp.Header.Get("X-Request-ID"); got == id {
		t.Fatalf("an unauthenticated %d-byte X-Request-ID was kept and echoed (status %d)", len(id), resp.StatusCode)
	}
}

// TestInsiderGrantOutlastsRequestedAccess: the submission asks for access until
// requested_access.requested_until, which the approver sees in the job's payload, but
// Agate ignores it: approved_until is the rule's ttl from the decision, and the
// re-evaluation answers "decision": true past the time the requester itself asked
// access to end. The grant must not exceed what was requested and approved.
func TestInsiderGrantOutlastsRequestedAccess(t *testing.T) {
	a := newARAPServer(t)
	sub := a.denial(t, "tok-pep", edit)
	until := a.clock.Now().Add(5 * time.Minute).UTC().Format(time.RFC3339)
	sub["requested_access"] = map[string]any{"requested_until": until}
	task := a.submit(t, "tok-pep", "k", sub)
	if _, err := a.svc.Approve(context.Background(), a.ids["approver"], jobs.ApproveRequest{JobID: task, JobHash: a.job(t, task).Hash}); err != nil {
		t.Fatal(err)
	}
	_, st := a.call(t, http.MethodGet, "/access/v1/requests/"+task, "tok-pep", "", nil)
	res, _ := st["result"].(map[string]any)
	a.clock.advance(15 * time.Minute)
	code, out := a.call(t, http.MethodPost, "/access/v1/evaluation", "tok-pep", "", reEdit(res["approval"]))
	if code == http.StatusOK && out["decision"] == true {
		t.Fatalf("access requested until %s was allowed 10 minutes past it: %v", until, out["context"])
	}
}

// TestInsiderTaskIDGuessable: the draft requires a task id that is "unguessable" and
// carries enough entropy to prevent practical guessing (§6.4, Access Request Response).
// With an Idempotency-Key, Agate's id is SHA-256 of the caller's id and the key, both
// of which another insider can know (keys are often request-derived: the README's is
// "pay-INV-1001"), so anyone can compute it without a secret of the server's.
func TestInsiderTaskIDGuessable(t *testing.T) {
	a := newARAPServer(t)
	const key = "pay-INV-1001"
	task := a.submit(t, "tok-pep", key, a.denial(t, "tok-pep", edit))
	sum := sha256.Sum256([]byte("pep-arap\x00" + key))
	guess := "arq_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:20]))
	if guess == task {
		t.Fatalf("the task id %s is computable from the submitter's id and its Idempotency-Key alone", task)
	}
}
