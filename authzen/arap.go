package authzen

import (
	"bytes"
	"context"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"google.golang.org/grpc/codes"

	"github.com/agate-pdp/agate/canonical"
	"github.com/agate-pdp/agate/decision"
	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/identity"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/server"
	"github.com/agate-pdp/agate/store"
)

// The Access Request and Approval Profile (ARAP): Agate is both the PDP and the
// Access Request Service, so the denial binding is by reference (the draft's
// same-service form, context.evaluation_id) and the approval reference is resolved by
// lookup (approval.id is the job id). A submission is a Decide of the denied
// evaluation; the re-evaluation that presents the approval is the job's Publish.

// RequestsPath is the Access Request Endpoint; a task is RequestsPath/<id>, and its
// cancellation RequestsPath/<id>/cancel.
const RequestsPath = "/access/v1/requests"

const (
	capabilityAccessRequest = "urn:openid:authzen:capability:access-request"
	problemPrefix           = "urn:openid:authzen:access-request:error:"
	evalPrefix              = "eval_"
	taskPrefix              = server.AccessRequestJobPrefix
	// DefaultDenialTTL is how long a requestable denial may be submitted.
	DefaultDenialTTL  = 10 * time.Minute
	maxIdempotencyKey = 255
	// denialSkew is the clock-skew tolerance on a denial's expires_at: the draft's
	// typical 30 s (Implementation Considerations, Time and Clock Skew).
	denialSkew = 30
)

// The ARAP problem types (draft section "Error Responses").
const (
	probNotRequestable  = "not_requestable"
	probExpiredDenial   = "expired_denial"
	probInvalidBinding  = "invalid_denial_binding"
	probDuplicate       = "duplicate_request"
	probUnknownTask     = "unknown_task"
	probInvalidTaskStat = "invalid_task_state"
)

var arapStatus = map[string]int{
	probNotRequestable: http.StatusBadRequest, probExpiredDenial: http.StatusGone,
	probInvalidBinding: http.StatusBadRequest, probDuplicate: http.StatusConflict,
	probUnknownTask: http.StatusNotFound, probInvalidTaskStat: http.StatusConflict,
}

// machinery are the context members the profile uses for itself: never authorization
// input, so never labels, payload or binding (draft "Terminology", Authorization-
// Relevant Context; approval is the re-evaluation's reference).
var machinery = []string{"access_request", "approval", "evaluated_at", "evaluation_id", "reason"}

// evalRef is what a requestable denial's evaluation_id stands for. Agate stores
// nothing for an evaluation, so the id carries the binding itself: the submission is
// checked against it by recomputing the binding hash, and the job is decided again
// under the active snapshot, which must still be the one named. A PEP that altered
// the id gains nothing an evaluation of its own would not give it: it holds Evaluate's
// role, and the decision is made again at submission.
type evalRef struct {
	V           int      `json:"v"`
	Snapshot    string   `json:"s"`
	EvaluatedAt int64    `json:"t"` // Unix seconds
	ExpiresAt   int64    `json:"x"`
	Binding     string   `json:"h"` // binding_hash
	Members     []string `json:"m"` // the authorization-relevant context members
}

// id is the evaluation_id of r, MACed with the deployment's key.
func (r evalRef) id(k *macKeys) string {
	b, _ := json.Marshal(r)
	return k.signEval(base64.RawURLEncoding.EncodeToString(b))
}

// maxEvalMembers bounds the context members an evaluation_id names.
const maxEvalMembers = 256

func parseEvalRef(k *macKeys, s string) (evalRef, bool) {
	var r evalRef
	if len(s) > 64<<10 {
		return r, false
	}
	enc, ok := k.openEval(s)
	if !ok {
		return r, false
	}
	b, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return r, false
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if d.Decode(&r) != nil || r.V != 1 || r.Snapshot == "" || r.Binding == "" || r.ExpiresAt < r.EvaluatedAt ||
		len(r.Members) > maxEvalMembers {
		return r, false
	}
	return r, true
}

// macs are the keys Attach derived; only called once a request is admitted.
func (h *Handler) macs() *macKeys { return h.backend.Load().keys }

func rfc3339(unix int64) string { return time.Unix(unix, 0).UTC().Format(time.RFC3339) }

func rfc3339Micro(us int64) string {
	if us == 0 {
		return ""
	}
	return time.UnixMicro(us).UTC().Format(time.RFC3339)
}

// stripMachinery removes the profile's own members from e's context, and returns the
// approval reference among them (nil when there is none).
func (e *evaluation) stripMachinery(at string) (json.RawMessage, error) {
	if e.Context == nil {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(e.Context, &m); err != nil {
		return nil, invalid(at+"context", "must be an object")
	}
	found := false
	for _, k := range machinery {
		if _, ok := m[k]; ok {
			found = true
		}
	}
	if !found {
		return nil, nil
	}
	appr := m["approval"]
	for _, k := range machinery {
		delete(m, k)
	}
	if len(m) == 0 {
		e.Context = nil
	} else {
		b, err := json.Marshal(m)
		if err != nil {
			return nil, invalid(at+"context", err.Error())
		}
		e.Context = b
	}
	if isNull(appr) {
		appr = nil
	}
	return appr, nil
}

// responseMembers refuses, in an evaluation's context, a member the profile defines
// for answers (a requestable denial's reason, evaluation_id, evaluated_at,
// access_request): a request that sends one means something by it, and dropping it
// silently would decide what the caller did not ask. approval is the re-evaluation's.
func (e *evaluation) responseMembers(at string) error {
	if isNull(e.Context) {
		return nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(e.Context, &m) != nil {
		return nil // stripMachinery names the error
	}
	for _, k := range machinery {
		if _, ok := m[k]; ok && k != "approval" {
			return invalid(at+"context."+k, "a member of the profile's answers, not a request's; rename it")
		}
	}
	return nil
}

// decoded is v (a JSON-encodable value) as decoded JSON, numbers as json.Number.
func decoded(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return decodeObject(b)
}

func decodeObject(b []byte) (map[string]any, error) {
	if isNull(b) {
		return map[string]any{}, nil
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

// binding is the binding hash of e (checked and stripped of machinery) with the given
// context members, or, when members is nil, with every member of its context.
func (e *evaluation) binding(members []string) (string, []string, error) {
	subj, err := decoded(e.Subject)
	if err != nil {
		return "", nil, err
	}
	res, err := decoded(e.Resource)
	if err != nil {
		return "", nil, err
	}
	act, err := decoded(e.Action)
	if err != nil {
		return "", nil, err
	}
	ctx, err := decodeObject(e.Context)
	if err != nil {
		return "", nil, err
	}
	if members == nil {
		members = make([]string, 0, len(ctx))
		for k := range ctx {
			members = append(members, k)
		}
		slices.Sort(members)
	}
	h, _, err := BindingHash(subj, res, act, ctx, members)
	if err != nil {
		return "", nil, invalid("body", err.Error())
	}
	return h, members, nil
}

// accessRequestHint is context.access_request of a requestable denial.
type accessRequestHint struct {
	Endpoint  string `json:"endpoint"`
	ExpiresAt string `json:"expires_at"`
}

// approvalRef is the approval of a task's result, and of a re-evaluation.
type approvalRef struct {
	ID            string          `json:"id"`
	ApprovedAt    string          `json:"approved_at,omitempty"`
	ApprovedUntil string          `json:"approved_until,omitempty"`
	PublishedAt   string          `json:"published_at,omitempty"` // a re-evaluation's: when the job was first published
	State         json.RawMessage `json:"state,omitempty"`
}

// requestable turns the answer to a require_human evaluation into a requestable
// denial: the binding (by reference), its deadline, and the endpoint.
func (h *Handler) requestable(r *http.Request, ev *evaluation, res *response) error {
	bh, members, err := ev.binding(nil)
	if err != nil {
		return err
	}
	if len(members) > maxEvalMembers {
		return invalid("context", fmt.Sprintf("a requestable denial binds at most %d context members", maxEvalMembers))
	}
	now := h.cfg.Clock().Unix()
	ref := evalRef{V: 1, Snapshot: res.Context.SnapshotID, EvaluatedAt: now,
		ExpiresAt: now + int64(h.cfg.DenialTTL/time.Second), Binding: bh, Members: members}
	c := res.Context
	c.EvaluationID, c.EvaluatedAt, c.BindingHash = ref.id(h.macs()), rfc3339(now), bh
	c.RuleReason, c.Reason = c.Reason, "approval_required"
	c.AccessRequest = &accessRequestHint{Endpoint: h.baseURL(r) + RequestsPath, ExpiresAt: rfc3339(ref.ExpiresAt)}
	return nil
}

// reevaluate answers an evaluation that presents an approval: it is the job's Publish
// of the content the PEP is about to enforce. The content is the evaluation (context
// without machinery) with the submission's own members, which the approval's state
// carries back; Publish compares its hash with the job's, so anything else — another
// subject, resource, action or context, an altered state — is refused and recorded.
//
// The draft (§8) has the PDP evaluate the new request under current policy: the
// answer is true only when the active policy still decides require_human (or allow)
// for this content, under the snapshot that decided the job, before the approval's
// deadline — the job's, the rule's ttl from the decision, and the requester's own
// requested_until, whichever is first.
func (h *Handler) reevaluate(ctx context.Context, svc *jobs.Service, p jobs.Principal, ev evaluation, raw json.RawMessage, at string) (response, error) {
	var appr approvalRef
	if err := json.Unmarshal(raw, &appr); err != nil {
		return response{}, invalid(at+"context.approval", "must be an object with a string id")
	}
	if appr.ID == "" {
		return response{}, invalid(at+"context.approval.id", "required, a non-empty string")
	}
	req, src, err := ev.job(at)
	if err != nil {
		return response{}, err
	}
	payload, err := jobPayload(ev, appr.State)
	if err != nil {
		return response{}, invalid(at+"context.approval.state", "must be the state the task's result gave")
	}
	hash, err := canonical.JobHash(req.Topic, req.Actor, req.Labels, payload)
	if err != nil {
		return response{}, invalid(at+"body", err.Error())
	}
	cur, err := svc.Evaluate(ctx, jobs.DecideRequest{Topic: req.Topic, Actor: req.Actor, Labels: req.Labels, Payload: payload}, "")
	if err != nil {
		return response{}, requestField(err, at, src)
	}
	now := h.cfg.Clock()
	// The requester's own end is checked before Publish, so that access past it is
	// never handed out. The state is only claimed until Publish checks its hash; a
	// claim of an earlier end only refuses sooner.
	if end, ok := requestedUntil(appr.State); ok && !now.Before(end) {
		return expired(appr.ID, end.UnixMicro(), "the access requested ends at "+end.UTC().Format(time.RFC3339)), nil
	}
	res, err := svc.Publish(ctx, p, jobs.PublishRequest{JobID: appr.ID, JobHash: hash})
	if err != nil {
		je, ok := jobs.AsError(err)
		switch {
		case !ok, je.Code == jobs.CodeInvalidArgument && je.Field != "job_id":
			return response{}, err
		case je.Retryable(), je.Code == jobs.CodeResourceExhausted, je.Code == jobs.CodeDataLoss:
			return response{}, err // not the approval's fault: a problem, so the PEP retries
		}
		out := notApproved(je, server.Classify(ctx, h.cfg.Log, je))
		if cur.Result.Decision == decision.Deny && out.Context.Reason == "approval_expired" {
			out.Context.Reason = "policy_denied" // the policy changed, and now denies it
		}
		return out, nil
	}
	j := res.Job
	switch {
	case cur.Result.Decision == decision.Deny:
		return response{Context: &decisionContext{Reason: "policy_denied", NextAction: "none", RuleID: cur.Result.RuleID,
			SnapshotID: cur.Snapshot, Approval: &approvalRef{ID: j.ID}}}, nil
	case cur.Snapshot != j.Snapshot && (j.Decision != decision.Allow.String() || cur.Result.Decision != decision.Allow):
		return expired(j.ID, j.ExpiresAt, "the policy changed since the approval"), nil
	}
	deadline := approvalDeadline(&j, cur.Result, appr.State)
	if deadline != 0 && now.UnixMicro() >= deadline {
		return expired(j.ID, deadline, "the approval's time has passed"), nil
	}
	c := &decisionContext{PolicyDecision: j.Decision, RuleID: j.RuleID,
		Reason: j.Reason, MatchedRules: j.MatchedRules, SnapshotID: j.Snapshot, JobHash: j.Hash,
		Approval: &approvalRef{ID: j.ID, ApprovedAt: rfc3339Micro(j.ApprovedAt), ApprovedUntil: rfc3339Micro(deadline),
			PublishedAt: rfc3339Micro(j.PublishedAt)}}
	if res.AlreadyPublished {
		c.Repeat = true
	}
	return response{Decision: true, Context: c}, nil
}

// expired is the answer approval_expired, naming the approval and its end.
func expired(id string, until int64, why string) response {
	return response{Context: &decisionContext{Reason: "approval_expired", NextAction: "none", RuleReason: why,
		Approval: &approvalRef{ID: id, ApprovedUntil: rfc3339Micro(until)}}}
}

// approvalDeadline is when an approved job's grant ends (Unix µs, 0 for none): the
// earliest of the job's deadline, its decision time plus the ttl the current rule
// gives (the same snapshot decided it, so a rewritten deadline column does not extend
// it), and the access request's requested_until.
func approvalDeadline(j *store.Job, cur decision.Result, state json.RawMessage) int64 {
	d := j.ExpiresAt
	earlier := func(t int64) {
		if d == 0 || t < d {
			d = t
		}
	}
	if cur.Decision == decision.RequireHuman && j.DecidedAt != 0 {
		earlier(j.DecidedAt + cur.Approval.TTL.Microseconds())
	}
	if end, ok := requestedUntil(state); ok {
		earlier(end.UnixMicro())
	}
	return d
}

// requestedUntil is requested_access.requested_until of an access request's state,
// when it names one. Submission refuses a malformed one.
func requestedUntil(state json.RawMessage) (time.Time, bool) {
	var s struct {
		RequestedAccess struct {
			RequestedUntil string `json:"requested_until"`
		} `json:"requested_access"`
	}
	if len(state) == 0 || json.Unmarshal(state, &s) != nil || s.RequestedAccess.RequestedUntil == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, s.RequestedAccess.RequestedUntil)
	if err != nil {
		return time.Unix(0, 0), true // unreadable: the grant has ended (fail closed)
	}
	return t, true
}

// notApproved is the denial of a re-evaluation whose approval does not apply, with
// the profile's re-evaluation reason code (draft "Approval and Re-evaluation").
func notApproved(je *jobs.Error, f server.Failure) response {
	reason := "approval_unverifiable"
	switch je.Reason {
	case jobs.ReasonApprovalExpired, jobs.ReasonSnapshotDrift:
		reason = "approval_expired"
	case jobs.ReasonJobHashMismatch:
		reason = "out_of_scope"
	case jobs.ReasonAlreadyRejected:
		reason = "policy_denied"
	case jobs.ReasonNotPending:
		switch je.Meta["status"] {
		case string(store.StatusExpired), string(store.StatusCancelled), string(store.StatusConflict):
			reason = "approval_expired" // expired, cancelled or superseded
		case string(store.StatusRejected):
			reason = "policy_denied"
		}
	}
	return response{Context: &decisionContext{Reason: reason, NextAction: "none",
		Error: &itemErr{Status: statusOf(f.Code), Reason: f.Reason, Message: f.Message}}}
}

// arMeta is what a submission adds to the denied evaluation, kept in the job's payload
// under access_request, and handed back as the approval's state: everything of the
// body but the evaluation itself, so the job's hash covers the whole submission.
type arMeta struct {
	Context         json.RawMessage `json:"context,omitempty"` // submission-time members
	RequestedAccess json.RawMessage `json:"requested_access,omitempty"`
	Client          json.RawMessage `json:"client,omitempty"`
	Denial          json.RawMessage `json:"denial"`
}

// jobPayload is the payload of the job of an access request: the evaluation and,
// under access_request, the submission's own members.
func jobPayload(ev evaluation, meta json.RawMessage) ([]byte, error) {
	if len(meta) == 0 || !json.Valid(meta) || meta[0] != '{' {
		return nil, errors.New("not an object")
	}
	return json.Marshal(struct {
		evaluation
		AccessRequest json.RawMessage `json:"access_request"`
	}{ev, meta})
}

// submission is an Access Request (draft "Access Request Submission").
type submission struct {
	evaluation
	Denial *struct {
		EvaluationID string `json:"evaluation_id"`
		EvaluatedAt  string `json:"evaluated_at,omitempty"`
		ExpiresAt    string `json:"expires_at"`
		Reason       string `json:"reason,omitempty"`
		BindingToken string `json:"binding_token,omitempty"`
		Template     string `json:"template,omitempty"`
	} `json:"denial"`
	RequestedAccess json.RawMessage `json:"requested_access"`
	Client          json.RawMessage `json:"client"`
	Items           json.RawMessage `json:"items"`
	Callback        json.RawMessage `json:"callback"`
}

// task is a Task Handle.
type task struct {
	ID             string            `json:"id"`
	Status         string            `json:"status"`
	StatusEndpoint string            `json:"status_endpoint"`
	ExpiresAt      string            `json:"expires_at,omitempty"`
	Links          map[string]string `json:"links,omitempty"`
}

type taskResult struct {
	Mode     string      `json:"mode"`
	Approval approvalRef `json:"approval"`
}

type taskResponse struct {
	Task   task        `json:"task"`
	Result *taskResult `json:"result,omitempty"`
}

// taskStatus maps a job's status onto the profile's task status (draft "Task Status
// Values"; the README has the table).
func taskStatus(s store.Status) string {
	switch s {
	case store.StatusPendingApproval:
		return "pending"
	case store.StatusApproved, store.StatusApprovedAndPublished, store.StatusSucceeded, store.StatusFailed,
		store.StatusAllowed, store.StatusAllowedAndPublished:
		return "approved"
	case store.StatusRejected, store.StatusDenied:
		return "denied"
	case store.StatusExpired:
		return "expired"
	case store.StatusCancelled:
		return "cancelled"
	}
	return "failed" // conflict: the job's content or snapshot no longer holds
}

// taskOf is the task handle of j; with result, an approved task carries its result.
func (h *Handler) taskOf(r *http.Request, j *store.Job, withResult bool) (taskResponse, error) {
	ep := h.baseURL(r) + RequestsPath + "/" + j.ID
	out := taskResponse{Task: task{ID: j.ID, Status: taskStatus(j.Status), StatusEndpoint: ep}}
	if out.Task.Status == "pending" {
		out.Task.ExpiresAt = rfc3339Micro(j.ExpiresAt)
		out.Task.Links = map[string]string{"cancel": ep + "/cancel"}
	}
	if out.Task.Status != "approved" || !withResult {
		return out, nil
	}
	var pl struct {
		AccessRequest json.RawMessage `json:"access_request"`
	}
	if err := json.Unmarshal(j.Payload, &pl); err != nil {
		return out, err
	}
	until := j.ExpiresAt
	if until == 0 { // allowed outright: no approval ttl; the task's answer is good for the denial's window
		until = j.DecidedAt + int64(h.cfg.DenialTTL/time.Microsecond)
	}
	if end, ok := requestedUntil(pl.AccessRequest); ok && end.UnixMicro() < until {
		until = end.UnixMicro() // no longer than the requester asked
	}
	out.Result = &taskResult{Mode: "reevaluate", Approval: approvalRef{ID: j.ID,
		ApprovedAt: rfc3339Micro(j.ApprovedAt), ApprovedUntil: rfc3339Micro(until), State: pl.AccessRequest}}
	return out, nil
}

// isTask reports whether j was created by an access request.
func isTask(j *store.Job) bool {
	if !strings.HasPrefix(j.ID, taskPrefix) {
		return false
	}
	var pl map[string]json.RawMessage
	if json.Unmarshal(j.Payload, &pl) != nil {
		return false
	}
	_, ok := pl["access_request"]
	return ok
}

// taskID is the job id of a submission: with an Idempotency-Key, arq_ + base32 of
// HMAC-SHA256(the deployment's task-id key, canonical caller || 0x00 || key), so a
// retry names the same job and Decide answers it again, another caller's equal key
// names another job, and no one without the deployment's key can compute it; without
// a key, a new random id. The id depends on the key: after a rotation of the evidence
// signing key, a retry with the same Idempotency-Key makes a new task.
func (k *macKeys) taskID(p jobs.Principal, key string) (string, error) {
	if key == "" {
		return taskPrefix + strings.ToLower(ulid.Make().String()), nil
	}
	c, err := identity.Key(p.ID)
	if err != nil {
		return "", err
	}
	sum := mac(k.task, c+"\x00"+key)
	return taskPrefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:20])), nil
}

// idempotencyKey reads the Idempotency-Key header: a structured-field string (quoted)
// or, as the draft's examples send it, a bare token.
func idempotencyKey(r *http.Request) (string, error) {
	vs := r.Header.Values("Idempotency-Key")
	if len(vs) == 0 {
		return "", nil
	}
	if len(vs) > 1 {
		return "", invalid("Idempotency-Key", "sent more than once")
	}
	v := strings.TrimSpace(vs[0])
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	if v == "" || len(v) > maxIdempotencyKey {
		return "", invalid("Idempotency-Key", fmt.Sprintf("must be 1 to %d characters", maxIdempotencyKey))
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x21 || v[i] > 0x7e || v[i] == '"' || v[i] == '\\' {
			return "", invalid("Idempotency-Key", "printable ASCII without quotes, backslashes or spaces only")
		}
	}
	return v, nil
}

// arapProblem answers a refusal with one of the profile's problem types; the reason
// code and field stay those of the job service's error.
func (h *Handler) arapProblem(w http.ResponseWriter, r *http.Request, kind string, err error) {
	f := server.Classify(r.Context(), h.cfg.Log, err)
	writeProblemType(w, r, f, arapStatus[kind], problemPrefix+kind)
}

// authenticated authenticates the caller and authorizes it for method, answering the
// request itself when it refuses.
func (h *Handler) authenticated(w http.ResponseWriter, r *http.Request, method string) (*jobs.Service, jobs.Principal, bool) {
	b := h.backend.Load()
	if b == nil {
		writeProblem(w, r, server.Failure{Code: codes.Unavailable, Message: "starting: waiting for the database"}, 0)
		return nil, jobs.Principal{}, false
	}
	svc := b.svc
	p, err := h.cfg.Auth.AuthenticateHTTP(r)
	if err == nil {
		if rec, ok := w.(*recorder); ok {
			rec.principal = p.ID
		}
		err = server.Authorize(method, p)
	}
	if err != nil {
		writeProblem(w, r, server.Classify(r.Context(), h.cfg.Log, err), 0)
		return nil, jobs.Principal{}, false
	}
	return svc, p, true
}

// submit serves POST /access/v1/requests.
func (h *Handler) submit(w http.ResponseWriter, r *http.Request) {
	svc, p, ok := h.authenticated(w, r, agatev1.DecisionService_Decide_FullMethodName)
	if !ok {
		return
	}
	key, err := idempotencyKey(r)
	if err != nil {
		writeProblem(w, r, server.Classify(r.Context(), h.cfg.Log, err), 0)
		return
	}
	var s submission
	if !h.readBody(w, r, &s, shapeSubmission) {
		return
	}
	fail := func(kind string, err error) { h.arapProblem(w, r, kind, err) }
	switch {
	case !isNull(s.Items):
		fail(probNotRequestable, invalid("items", "bulk access requests are not supported; submit one per denial"))
		return
	case !isNull(s.Callback):
		fail(probNotRequestable, invalid("callback", "callbacks are not supported; poll the task, or use notifications or WatchJobs"))
		return
	case s.Denial == nil:
		fail(probInvalidBinding, invalid("denial", "required: the requestable denial's evaluation_id and expires_at"))
		return
	case s.Denial.BindingToken != "":
		fail(probInvalidBinding, invalid("denial.binding_token", "this PDP issues no binding_token; bind by denial.evaluation_id"))
		return
	case s.Denial.EvaluationID == "":
		fail(probInvalidBinding, invalid("denial.evaluation_id", "required: Agate binds denials by evaluation_id and issues no binding_token"))
		return
	}
	ref, ok := parseEvalRef(h.macs(), s.Denial.EvaluationID)
	if !ok {
		fail(probInvalidBinding, invalid("denial.evaluation_id", "not an evaluation id this PDP issued"))
		return
	}
	exp, err := time.Parse(time.RFC3339, s.Denial.ExpiresAt)
	if err != nil || exp.Unix() != ref.ExpiresAt {
		fail(probInvalidBinding, invalid("denial.expires_at", "must be context.access_request.expires_at of the denial, unchanged"))
		return
	}
	s.normalize()
	ev := s.evaluation
	if _, err := ev.stripMachinery(""); err != nil {
		fail(probInvalidBinding, err)
		return
	}
	if err := ev.check(""); err != nil {
		fail(probInvalidBinding, err)
		return
	}
	// The denied evaluation's context members bind; any other is the submission's own.
	all, err := decodeObject(ev.Context)
	if err != nil {
		fail(probInvalidBinding, invalid("context", "must be an object"))
		return
	}
	members := make(map[string]struct{}, len(ref.Members))
	for _, m := range ref.Members {
		members[m] = struct{}{}
	}
	bound, extra := map[string]json.RawMessage{}, map[string]json.RawMessage{}
	for k, v := range all {
		b, _ := json.Marshal(v)
		if _, ok := members[k]; ok {
			bound[k] = b
		} else {
			extra[k] = b
		}
	}
	ev.Context = nil
	if len(bound) > 0 {
		ev.Context, _ = json.Marshal(bound)
	}
	if bh, _, err := ev.binding(ref.Members); err != nil || bh != ref.Binding {
		fail(probInvalidBinding, invalid("denial.evaluation_id",
			"the subject, resource, action or context differ from the denied evaluation's (binding_hash mismatch)"))
		return
	}
	if err := h.checkRequestedAccess(s.RequestedAccess); err != nil {
		writeProblem(w, r, server.Classify(r.Context(), h.cfg.Log, err), 0)
		return
	}
	denial, _ := json.Marshal(s.Denial)
	meta := arMeta{RequestedAccess: nullless(s.RequestedAccess), Client: nullless(s.Client), Denial: denial}
	if len(extra) > 0 {
		meta.Context, _ = json.Marshal(extra)
	}
	metaJSON, _ := json.Marshal(meta)
	req, src, err := ev.job("")
	if err != nil {
		fail(probInvalidBinding, err)
		return
	}
	if req.Payload, err = jobPayload(ev, metaJSON); err != nil {
		fail(probInvalidBinding, invalid("body", err.Error()))
		return
	}
	if err := h.fresh(svc, ref, s.Denial.ExpiresAt); err != nil {
		// A retry of a submission accepted in time finds its task however old the
		// denial is now: the key is kept at least 24 h after the task is final (§6.1).
		if key != "" && h.retried(w, r, svc, p, key, req) {
			return
		}
		fail(probExpiredDenial, err)
		return
	}
	// Only a requestable denial may be submitted: a forged evaluation_id of content
	// the policy allows or denies outright stores nothing.
	pre, err := svc.Evaluate(r.Context(), jobs.DecideRequest{Topic: req.Topic, Actor: req.Actor, Labels: req.Labels, Payload: req.Payload}, "")
	if err != nil {
		writeProblem(w, r, server.Classify(r.Context(), h.cfg.Log, requestField(err, "", src)), 0)
		return
	}
	if pre.Result.Decision != decision.RequireHuman {
		fail(probNotRequestable, &jobs.Error{Code: jobs.CodeFailedPrecondition, Reason: jobs.ReasonNotPending,
			Msg:  "the policy decides " + pre.Result.Decision.String() + " for this request, not require_human: nothing to request",
			Meta: map[string]string{"status": pre.Result.Decision.String()}})
		return
	}
	if req.JobID, err = h.macs().taskID(p, key); err != nil {
		writeProblem(w, r, server.Classify(r.Context(), h.cfg.Log, err), 0)
		return
	}
	h.decideTask(w, r, svc, p, req, src)
}

// checkRequestedAccess checks requested_access.requested_until, which bounds the
// grant: an RFC 3339 time after now.
func (h *Handler) checkRequestedAccess(raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	var ra struct {
		RequestedUntil *string `json:"requested_until"`
	}
	if err := json.Unmarshal(raw, &ra); err != nil {
		return invalid("requested_access", "must be an object")
	}
	if ra.RequestedUntil == nil {
		return nil
	}
	t, err := time.Parse(time.RFC3339, *ra.RequestedUntil)
	switch {
	case err != nil:
		return invalid("requested_access.requested_until", "must be an RFC 3339 date-time")
	case !t.After(h.cfg.Clock()):
		return invalid("requested_access.requested_until", "must be in the future")
	}
	return nil
}

func nullless(raw json.RawMessage) json.RawMessage {
	if isNull(raw) {
		return nil
	}
	return raw
}

// tasks routes RequestsPath/<id> (GET) and RequestsPath/<id>/cancel (POST, DELETE).
func (h *Handler) tasks(w http.ResponseWriter, r *http.Request, rest string) {
	id, op, _ := strings.Cut(rest, "/")
	switch {
	case op == "" && id != "":
		h.only(w, r, http.MethodGet, func(w http.ResponseWriter, r *http.Request) { h.status(w, r, id) })
	case op == "cancel" && id != "":
		if r.Method == http.MethodDelete {
			h.cancel(w, r, id)
			return
		}
		h.only(w, r, http.MethodPost, func(w http.ResponseWriter, r *http.Request) { h.cancel(w, r, id) })
	default:
		writeProblem(w, r, server.Failure{Code: codes.NotFound, Reason: jobs.ReasonNotFound,
			Message: "no such endpoint; see " + MetadataPath}, 0)
	}
}

func unknownTask(id string) error {
	return &jobs.Error{Code: jobs.CodeNotFound, Reason: jobs.ReasonNotFound, Msg: "task " + id + " not found"}
}

// status serves GET RequestsPath/<id>: the task, to a caller with standing on its job
// (GetJob's); the result only to its submitter and to dispatchers, who enforce it.
func (h *Handler) status(w http.ResponseWriter, r *http.Request, id string) {
	svc, p, ok := h.authenticated(w, r, agatev1.DecisionService_GetJob_FullMethodName)
	if !ok {
		return
	}
	v, err := svc.GetJob(r.Context(), p, id)
	if err == nil && !isTask(&v.Job) {
		err = unknownTask(id)
	}
	if err != nil {
		h.taskError(w, r, id, err)
		return
	}
	out, err := h.taskOf(r, &v.Job, identity.Same(p.ID, v.Job.SubmittedBy) || p.HasRole(jobs.RoleDispatch))
	if err != nil {
		writeProblem(w, r, server.Classify(r.Context(), h.cfg.Log, err), 0)
		return
	}
	writeJSON(w, out)
}

// taskError answers a task call's error; a job that is missing, or on which the
// caller has no standing, is the same unknown_task.
func (h *Handler) taskError(w http.ResponseWriter, r *http.Request, id string, err error) {
	je, ok := jobs.AsError(err)
	switch {
	case ok && je.Code == jobs.CodeNotFound:
		h.arapProblem(w, r, probUnknownTask, unknownTask(id))
	case ok && je.Code == jobs.CodeInvalidArgument && je.Field == "job_id":
		h.arapProblem(w, r, probUnknownTask, unknownTask(id))
	case ok && je.Reason == jobs.ReasonNotPending:
		h.arapProblem(w, r, probInvalidTaskStat, err)
	default:
		writeProblem(w, r, server.Classify(r.Context(), h.cfg.Log, err), 0)
	}
}

// cancel serves POST (or DELETE) RequestsPath/<id>/cancel: Agate's Cancel, with its
// standing (the submitter, or an operator).
func (h *Handler) cancel(w http.ResponseWriter, r *http.Request, id string) {
	svc, p, ok := h.authenticated(w, r, agatev1.DecisionService_Cancel_FullMethodName)
	if !ok {
		return
	}
	if !strings.HasPrefix(id, taskPrefix) { // not a task: this endpoint cancels only tasks
		h.arapProblem(w, r, probUnknownTask, unknownTask(id))
		return
	}
	var body struct {
		Reason  string `json:"reason"`
		Comment string `json:"comment"`
	}
	if r.ContentLength != 0 && r.Header.Get("Content-Type") != "" && !h.readBody(w, r, &body, shapeCancel) {
		return
	}
	why := strings.TrimSpace(strings.Join(slices.DeleteFunc([]string{body.Reason, body.Comment}, func(s string) bool { return s == "" }), ": "))
	if why == "" {
		why = "cancelled by the requester (AuthZEN access request cancellation)"
	}
	res, err := svc.Cancel(r.Context(), p, jobs.CancelRequest{JobID: id, Reason: why})
	if err != nil {
		h.taskError(w, r, id, err)
		return
	}
	out, err := h.taskOf(r, &res.Job, false)
	if err != nil {
		writeProblem(w, r, server.Classify(r.Context(), h.cfg.Log, err), 0)
		return
	}
	writeJSON(w, out)
}

// fresh reports why a denial can no longer be submitted: its expires_at has passed
// (with the clock-skew tolerance), or the policy changed since.
func (h *Handler) fresh(svc *jobs.Service, ref evalRef, expires string) error {
	if h.cfg.Clock().Unix() > ref.ExpiresAt+denialSkew {
		return invalid("denial.expires_at", "the requestable denial expired at "+expires+"; evaluate again")
	}
	if act, ok := svc.Active(); !ok || act.Snapshot.ID != ref.Snapshot {
		active := ""
		if ok {
			active = act.Snapshot.ID
		}
		return &jobs.Error{Code: jobs.CodeFailedPrecondition, Reason: jobs.ReasonSnapshotDrift,
			Msg:  "the policy changed since the denial; evaluate again",
			Meta: map[string]string{"expected_snapshot": ref.Snapshot, "active_snapshot": active}}
	}
	return nil
}

// retried answers a submission whose denial is no longer fresh when it repeats one the
// caller made in time with the same key: the same task, or duplicate_request for
// another body. It reports false, answering nothing, when there is no such task. The
// answer is Decide's, so a reuse of the key with another body is recorded
// (JOB_HASH_MISMATCH) as it is while the denial is fresh.
func (h *Handler) retried(w http.ResponseWriter, r *http.Request, svc *jobs.Service, p jobs.Principal, key string, req jobs.DecideRequest) bool {
	id, err := h.macs().taskID(p, key)
	if err != nil {
		return false
	}
	v, err := svc.GetJob(r.Context(), p, id)
	if err != nil || !identity.Same(p.ID, v.Job.SubmittedBy) {
		return false
	}
	req.JobID = id
	h.decideTask(w, r, svc, p, req, nil)
	return true
}

// decideTask is the Decide of a submission's job, answered as its task.
func (h *Handler) decideTask(w http.ResponseWriter, r *http.Request, svc *jobs.Service, p jobs.Principal, req jobs.DecideRequest, src map[string]string) {
	res, err := svc.Decide(r.Context(), p, req)
	if err != nil {
		je, ok := jobs.AsError(err)
		switch {
		case ok && (je.Reason == jobs.ReasonJobHashMismatch || je.Reason == jobs.ReasonJobIDInUse):
			out := *je
			out.Field, out.Msg = "Idempotency-Key", "Idempotency-Key reused with another body: "+je.Msg
			h.arapProblem(w, r, probDuplicate, &out)
		default:
			writeProblem(w, r, server.Classify(r.Context(), h.cfg.Log, requestField(err, "", src)), 0)
		}
		return
	}
	h.answerTask(w, r, &res.Job)
}

// answerTask answers a submission with its task: 202 while pending, else 201.
func (h *Handler) answerTask(w http.ResponseWriter, r *http.Request, j *store.Job) {
	out, err := h.taskOf(r, j, true)
	if err != nil {
		writeProblem(w, r, server.Classify(r.Context(), h.cfg.Log, err), 0)
		return
	}
	status := http.StatusCreated
	if out.Task.Status == "pending" {
		status = http.StatusAccepted
	}
	w.Header().Set("Location", out.Task.StatusEndpoint)
	writeJSONStatus(w, status, out)
}
