package authzen_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/agate-pdp/agate/authzen"
	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/store"
)

// call sends one request to a and decodes the answer.
func (a *arapServer) call(t *testing.T, method, path, token, key string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, a.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, out
}

var (
	edit = map[string]any{"subject": map[string]any{"type": "user", "id": "alice"}, "action": map[string]any{"name": "can_edit"},
		"resource": map[string]any{"type": "document", "id": "doc-1"}, "context": map[string]any{"device": "managed"}}
	read = map[string]any{"subject": map[string]any{"type": "user", "id": "alice"}, "action": map[string]any{"name": "can_read"},
		"resource": map[string]any{"type": "document", "id": "doc-1"}}
)

// denial evaluates ev as token and returns the submission of its requestable denial.
func (a *arapServer) denial(t *testing.T, token string, ev map[string]any) map[string]any {
	t.Helper()
	code, out := a.call(t, http.MethodPost, "/access/v1/evaluation", token, "", ev)
	c, _ := out["context"].(map[string]any)
	ar, _ := c["access_request"].(map[string]any)
	if code != http.StatusOK || ar == nil {
		t.Fatalf("not a requestable denial: %d %v", code, out)
	}
	sub := map[string]any{}
	for k, v := range ev {
		sub[k] = v
	}
	sub["denial"] = map[string]any{"evaluation_id": c["evaluation_id"], "expires_at": ar["expires_at"]}
	return sub
}

func (a *arapServer) submit(t *testing.T, token, key string, sub map[string]any) string {
	t.Helper()
	code, out := a.call(t, http.MethodPost, "/access/v1/requests", token, key, sub)
	tk, _ := out["task"].(map[string]any)
	if code != http.StatusAccepted || tk == nil {
		t.Fatalf("submission: %d %v", code, out)
	}
	return tk["id"].(string)
}

func (a *arapServer) events(t *testing.T, chain string) []evidence.Event {
	t.Helper()
	var events []evidence.Event
	err := a.st.Read(context.Background(), func(ctx context.Context, tx store.Tx) error {
		var err error
		events, err = tx.ListEvents(ctx, chain)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return events
}

func (a *arapServer) job(t *testing.T, id string) store.Job {
	t.Helper()
	v, err := a.svc.GetJob(context.Background(), jobs.Principal{ID: "auditor", Roles: []string{"audit"}}, id)
	if err != nil {
		t.Fatal(err)
	}
	return v.Job
}

func count(events []evidence.Event, k evidence.Kind) int {
	n := 0
	for _, e := range events {
		if e.Kind == k {
			n++
		}
	}
	return n
}

// TestInsiderIdempotencyKeyOfAnother: a PEP that learns another PEP's Idempotency-Key
// and replays its exact submission gets a task of its own; it neither sees nor
// disturbs the other's, and the other's retry still answers the other's task.
func TestInsiderIdempotencyKeyOfAnother(t *testing.T) {
	a := newARAPServer(t)
	sub := a.denial(t, "tok-pep", edit)
	mine := a.submit(t, "tok-pep", "shared-key", sub)
	theirs := a.submit(t, "tok-other", "shared-key", sub)
	if mine == theirs {
		t.Fatalf("two principals' equal keys named one task %s", mine)
	}
	if code, _ := a.call(t, http.MethodGet, "/access/v1/requests/"+mine, "tok-other", "", nil); code != http.StatusNotFound {
		t.Fatalf("the other PEP polled my task: %d", code)
	}
	if again := a.submit(t, "tok-pep", "shared-key", sub); again != mine {
		t.Fatalf("my retry named %s, not %s", again, mine)
	}
	if j := a.job(t, mine); j.SubmittedBy != "pep-arap" || j.Status != store.StatusPendingApproval {
		t.Fatalf("my job: %+v", j)
	}
}

// TestInsiderCancelAnothersTask: cancelling another PEP's task answers 404 as for a
// missing one, changes nothing, and lands on the canceller's own chain.
func TestInsiderCancelAnothersTask(t *testing.T) {
	a := newARAPServer(t)
	task := a.submit(t, "tok-pep", "k", a.denial(t, "tok-pep", edit))
	for _, method := range []string{http.MethodPost, http.MethodDelete} {
		code, out := a.call(t, method, "/access/v1/requests/"+task+"/cancel", "tok-other", "", nil)
		_, missing := a.call(t, method, "/access/v1/requests/arq_missing/cancel", "tok-other", "", nil)
		if code != http.StatusNotFound || out["type"] != missing["type"] || out["reason"] != missing["reason"] || out["title"] != missing["title"] {
			t.Fatalf("%s: %d %v, missing %v", method, code, out, missing)
		}
	}
	if j := a.job(t, task); j.Status != store.StatusPendingApproval {
		t.Fatalf("cancelled by another: %s", j.Status)
	}
	if n := count(a.events(t, task), evidence.KindCancel); n != 0 {
		t.Fatalf("%d cancel events", n)
	}
	if n := len(a.events(t, evidence.PrincipalChain("other-pep"))); n < 2 {
		t.Fatalf("the attempts are not on the canceller's chain: %d events", n)
	}
}

// TestInsiderForgedEvaluationID: a PEP that writes its own evaluation_id — for content
// the policy allows outright, naming a snapshot that is not active, or with a later
// deadline — without the deployment's key cannot MAC it: it is refused as
// invalid_denial_binding and stores nothing. So is a real one with its MAC moved onto
// another payload.
func TestInsiderForgedEvaluationID(t *testing.T) {
	a := newARAPServer(t)
	real := a.denial(t, "tok-pep", edit)
	ref := decodeRef(t, real["denial"].(map[string]any)["evaluation_id"].(string))

	forge := func(ev map[string]any, mutate func(map[string]any)) map[string]any {
		r := map[string]any{}
		for k, v := range ref {
			r[k] = v
		}
		sub := map[string]any{}
		for k, v := range ev {
			sub[k] = v
		}
		r["h"] = bindingOf(t, ev)
		r["m"] = []string{}
		if c, ok := ev["context"].(map[string]any); ok {
			ms := []string{}
			for k := range c {
				ms = append(ms, k)
			}
			r["m"] = ms
		}
		if mutate != nil {
			mutate(r)
		}
		raw, _ := json.Marshal(r)
		sub["denial"] = map[string]any{"evaluation_id": "eval_" + base64.RawURLEncoding.EncodeToString(raw),
			"expires_at": real["denial"].(map[string]any)["expires_at"]}
		return sub
	}
	realID := real["denial"].(map[string]any)["evaluation_id"].(string)
	_, sig, _ := strings.Cut(realID, ".")
	for name, sub := range map[string]map[string]any{
		"allowed action":    forge(read, nil),
		"inactive snapshot": forge(edit, func(r map[string]any) { r["s"] = "snap_0000000000000000" }),
		"later deadline":    forge(edit, func(r map[string]any) { r["x"] = r["x"].(float64) + 3600 }),
	} {
		for _, withSig := range []bool{false, true} {
			if withSig { // the real MAC on another payload
				d := sub["denial"].(map[string]any)
				d["evaluation_id"] = strings.SplitN(d["evaluation_id"].(string), ".", 2)[0] + "." + sig
			}
			code, out := a.call(t, http.MethodPost, "/access/v1/requests", "tok-pep", "k-"+strings.ReplaceAll(name, " ", "-"), sub)
			if code != http.StatusBadRequest || out["type"] != "urn:openid:authzen:access-request:error:invalid_denial_binding" {
				t.Fatalf("a forged evaluation_id (%s, real MAC %v): %d %v", name, withSig, code, out)
			}
		}
	}
	err := a.st.Read(context.Background(), func(ctx context.Context, tx store.Tx) error {
		js, err := tx.ListJobs(ctx, store.JobQuery{Limit: 10})
		if err == nil && len(js) > 0 {
			t.Errorf("forged submissions stored %d jobs", len(js))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func decodeRef(t *testing.T, id string) map[string]any {
	t.Helper()
	payload, _, _ := strings.Cut(strings.TrimPrefix(id, "eval_"), ".")
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		t.Fatal(err)
	}
	var r map[string]any
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func bindingOf(t *testing.T, ev map[string]any) string {
	t.Helper()
	raw, _ := json.Marshal(ev)
	var m struct{ Subject, Resource, Action, Context map[string]any }
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	members := []string{}
	for k := range m.Context {
		members = append(members, k)
	}
	h, _, err := authzen.BindingHash(m.Subject, m.Resource, m.Action, m.Context, members)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestInsiderReevaluateWithoutDispatch: an approval presented by a caller that may not
// publish (a submitter holding decide only) allows nothing and publishes nothing; a
// dispatcher's re-evaluation is Publish, as over gRPC.
func TestInsiderReevaluateWithoutDispatch(t *testing.T) {
	a := newARAPServer(t)
	task := a.submit(t, "tok-decide", "k", a.denial(t, "tok-decide", edit))
	j := a.job(t, task)
	if _, err := a.svc.Approve(context.Background(), a.ids["approver"], jobs.ApproveRequest{JobID: task, JobHash: j.Hash}); err != nil {
		t.Fatal(err)
	}
	code, st := a.call(t, http.MethodGet, "/access/v1/requests/"+task, "tok-decide", "", nil)
	res, _ := st["result"].(map[string]any)
	if code != http.StatusOK || res == nil {
		t.Fatalf("the submitter's status: %d %v", code, st)
	}
	re := map[string]any{}
	for k, v := range edit {
		re[k] = v
	}
	re["context"] = map[string]any{"device": "managed", "approval": res["approval"]}
	code, out := a.call(t, http.MethodPost, "/access/v1/evaluation", "tok-decide", "", re)
	if code != http.StatusOK || out["decision"] != false {
		t.Fatalf("decide-only re-evaluation: %d %v", code, out)
	}
	if n := count(a.events(t, task), evidence.KindPublish); n != 0 {
		t.Fatalf("%d publish events", n)
	}
	code, out = a.call(t, http.MethodPost, "/access/v1/evaluation", "tok-dispatch", "", re)
	if code != http.StatusOK || out["decision"] != true {
		t.Fatalf("the dispatcher's re-evaluation: %d %v", code, out)
	}
	// A dispatcher may publish, but not evaluate.
	if code, out := a.call(t, http.MethodPost, "/access/v1/evaluation", "tok-dispatch", "", edit); code != http.StatusForbidden {
		t.Fatalf("a dispatcher's plain evaluation: %d %v", code, out)
	}
	if n := count(a.events(t, task), evidence.KindPublish); n != 1 {
		t.Fatalf("%d publish events", n)
	}
}

// TestInsiderOversizedSubmission: a body over the limit is refused before it is read
// whole, and stores nothing.
func TestInsiderOversizedSubmission(t *testing.T) {
	a := newARAPServer(t)
	big := `{"subject": {"type": "user", "id": "alice", "properties": {"pad": "` + strings.Repeat("x", 5<<20) + `"}}}`
	code, out := a.call(t, http.MethodPost, "/access/v1/requests", "tok-pep", "k", big)
	if code != http.StatusRequestEntityTooLarge || out["field"] != "body" {
		t.Fatalf("oversized: %d %v", code, out)
	}
}

// TestInsiderReplayAcrossSnapshot: a denial obtained under one policy cannot be
// submitted once another is active, and an approval obtained under one cannot be
// enforced under another: Publish is strict about the snapshot, and the job's
// evidence shows the refusal, not a publish.
func TestInsiderReplayAcrossSnapshot(t *testing.T) {
	a := newARAPServer(t)
	old := a.denial(t, "tok-pep", edit)
	a.putPolicy(t, "testdata/arap/policy-v2.yaml")
	if code, out := a.call(t, http.MethodPost, "/access/v1/requests", "tok-pep", "k-old", old); code != http.StatusGone || out["reason"] != "SNAPSHOT_DRIFT" {
		t.Fatalf("a denial from the previous snapshot: %d %v", code, out)
	}
	task := a.submit(t, "tok-pep", "k-new", a.denial(t, "tok-pep", edit))
	if _, err := a.svc.Approve(context.Background(), a.ids["approver"], jobs.ApproveRequest{JobID: task, JobHash: a.job(t, task).Hash}); err != nil {
		t.Fatal(err)
	}
	_, st := a.call(t, http.MethodGet, "/access/v1/requests/"+task, "tok-pep", "", nil)
	res, _ := st["result"].(map[string]any)
	a.putPolicy(t, "testdata/policy.yaml")
	re := map[string]any{}
	for k, v := range edit {
		re[k] = v
	}
	re["context"] = map[string]any{"device": "managed", "approval": res["approval"]}
	code, out := a.call(t, http.MethodPost, "/access/v1/evaluation", "tok-pep", "", re)
	c, _ := out["context"].(map[string]any)
	if code != http.StatusOK || out["decision"] != false || c["reason"] != "approval_expired" {
		t.Fatalf("an approval from the previous snapshot: %d %v", code, out)
	}
	events := a.events(t, task)
	if count(events, evidence.KindPublish) != 0 || count(events, evidence.KindConflict) == 0 {
		t.Fatalf("evidence: %v", events)
	}
}

// TestInsiderCancelNonTaskJob: the cancellation endpoint cancels tasks only. A job its
// caller submitted over gRPC is not a task: cancelling it here is unknown_task, as for
// the status endpoint, and the job stays as it was.
func TestInsiderCancelNonTaskJob(t *testing.T) {
	a := newARAPServer(t)
	res, err := a.svc.Decide(context.Background(), a.ids["pep-arap"], jobs.DecideRequest{JobID: "job-plain-1", Topic: "can_edit",
		Actor: "alice", Labels: map[string]any{"subject.id": "alice", "resource.type": "document", "resource.id": "doc-1"}})
	if err != nil || res.Job.Status != store.StatusPendingApproval {
		t.Fatalf("decide: %v %v", err, res.Job.Status)
	}
	for _, path := range []string{"/access/v1/requests/job-plain-1", "/access/v1/requests/job-plain-1/cancel"} {
		method := http.MethodGet
		if strings.HasSuffix(path, "/cancel") {
			method = http.MethodPost
		}
		code, out := a.call(t, method, path, "tok-pep", "", nil)
		if code != http.StatusNotFound || out["type"] != "urn:openid:authzen:access-request:error:unknown_task" {
			t.Fatalf("%s %s: %d %v", method, path, code, out)
		}
	}
	if j := a.job(t, "job-plain-1"); j.Status != store.StatusPendingApproval {
		t.Fatalf("a non-task job was cancelled through the task endpoint: %s", j.Status)
	}
}
