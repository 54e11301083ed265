package authzen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/agate-pdp/agate/decision"
	"github.com/agate-pdp/agate/jobs"
)

// entity is an AuthZEN Subject or Resource. Unknown members are ignored, as the
// specification requires of receivers.
type entity struct {
	Type       string          `json:"type"`
	ID         string          `json:"id"`
	Properties json.RawMessage `json:"properties,omitempty"`
}

// action is an AuthZEN Action.
type action struct {
	Name       string          `json:"name"`
	Properties json.RawMessage `json:"properties,omitempty"`
}

// evaluation is one Access Evaluation request: the body of /access/v1/evaluation, an
// item of an evaluations array, and the defaults at the top of a batch.
type evaluation struct {
	Subject  *entity         `json:"subject,omitempty"`
	Action   *action         `json:"action,omitempty"`
	Resource *entity         `json:"resource,omitempty"`
	Context  json.RawMessage `json:"context,omitempty"`
}

// batch is an Access Evaluations request.
type batch struct {
	evaluation
	Evaluations []evaluation `json:"evaluations"`
	Options     struct {
		Semantic *string `json:"evaluations_semantic"`
	} `json:"options"`
}

// The evaluations semantics of the specification's options.evaluations_semantic.
const (
	executeAll          = "execute_all"
	denyOnFirstDeny     = "deny_on_first_deny"
	permitOnFirstPermit = "permit_on_first_permit"
)

// maxDepth bounds how deeply nested a property may be: flattening recurses on it.
const maxDepth = 32

// labelSep joins the path of a property into a label name.
const labelSep = "."

func isNull(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }

// normalize drops explicit nulls, which the specification asks senders to omit: null
// and absent mean the same.
func (e *evaluation) normalize() {
	if isNull(e.Context) {
		e.Context = nil
	}
	for _, en := range []*entity{e.Subject, e.Resource} {
		if en != nil && isNull(en.Properties) {
			en.Properties = nil
		}
	}
	if e.Action != nil && isNull(e.Action.Properties) {
		e.Action.Properties = nil
	}
}

// withDefaults is item with the batch's top-level values filling what it leaves out.
// An entity the item names replaces the default whole, properties included; only a
// required member it omits (type, id, name) falls back to the default's, as the
// AuthZEN certification scenario's default-merging test (c-3-2-7) expects.
func withDefaults(def, item evaluation) evaluation {
	out := item
	out.Subject = mergeEntity(def.Subject, item.Subject)
	out.Resource = mergeEntity(def.Resource, item.Resource)
	switch {
	case item.Action == nil:
		out.Action = def.Action
	case def.Action != nil && item.Action.Name == "":
		a := *item.Action
		a.Name = def.Action.Name
		out.Action = &a
	}
	if item.Context == nil {
		out.Context = def.Context
	}
	return out
}

func mergeEntity(def, item *entity) *entity {
	if item == nil || def == nil {
		if item == nil {
			return def
		}
		return item
	}
	m := *item
	if m.Type == "" {
		m.Type = def.Type
	}
	if m.ID == "" {
		m.ID = def.ID
	}
	return &m
}

// job maps an evaluation onto the job Evaluate decides. at prefixes the request fields
// named in errors ("evaluations[2]."). It returns the label names' sources, so that an
// error the job service reports on a label can name the request field it came from.
func (e *evaluation) job(at string) (jobs.DecideRequest, map[string]string, error) {
	if err := e.check(at); err != nil {
		return jobs.DecideRequest{}, nil, err
	}
	f := flattener{at: at, labels: map[string]any{}, src: map[string]string{}}
	f.set("subject.type", "subject.type", e.Subject.Type)
	f.set("subject.id", "subject.id", e.Subject.ID)
	f.set("resource.type", "resource.type", e.Resource.Type)
	f.set("resource.id", "resource.id", e.Resource.ID)
	for _, p := range []struct {
		label, field string
		raw          json.RawMessage
	}{
		{"subject", "subject.properties", e.Subject.Properties},
		{"action", "action.properties", e.Action.Properties},
		{"resource", "resource.properties", e.Resource.Properties},
		{"", "context", e.Context}, // the environment: labels by their own names, as env or destination
	} {
		if err := f.object(p.label, p.field, p.raw); err != nil {
			return jobs.DecideRequest{}, nil, err
		}
	}
	// The payload is the evaluation itself, defaults applied and unknown members
	// dropped: every value, arrays included, is hashed, and none is lost.
	payload, err := json.Marshal(e)
	if err != nil {
		return jobs.DecideRequest{}, nil, invalid(strings.TrimSuffix(at, ".")+"body", err.Error())
	}
	return jobs.DecideRequest{Topic: e.Action.Name, Actor: e.Subject.ID, Labels: f.labels, Payload: payload}, f.src, nil
}

// check reports the first required member that is missing.
func (e *evaluation) check(at string) error {
	switch {
	case e.Subject == nil:
		return invalid(at+"subject", "required")
	case e.Subject.Type == "":
		return invalid(at+"subject.type", "required, a non-empty string")
	case e.Subject.ID == "":
		return invalid(at+"subject.id", "required, a non-empty string")
	case e.Action == nil:
		return invalid(at+"action", "required")
	case e.Action.Name == "":
		return invalid(at+"action.name", "required, a non-empty string")
	case e.Resource == nil:
		return invalid(at+"resource", "required")
	case e.Resource.Type == "":
		return invalid(at+"resource.type", "required, a non-empty string")
	case e.Resource.ID == "":
		return invalid(at+"resource.id", "required, a non-empty string")
	}
	return nil
}

// flattener turns nested properties into labels named by their path.
type flattener struct {
	at     string
	labels map[string]any
	src    map[string]string // label name → the request field it came from
}

func (f *flattener) set(label, field string, v any) error {
	if strings.HasPrefix(field, "context") && reserved(label) {
		return invalid(f.at+field, fmt.Sprintf("becomes label %q: labels subject.*, action.* and resource.* come from those members only", label))
	}
	if prev, dup := f.src[label]; dup {
		return invalid(f.at+field, fmt.Sprintf("becomes label %q, which %s%s sets too; rename the property", label, f.at, prev))
	}
	f.labels[label], f.src[label] = v, field
	return nil
}

// object flattens a properties or context object into labels named label.<path>, or
// <path> when label is empty.
func (f *flattener) object(label, field string, raw json.RawMessage) error {
	if raw == nil {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return invalid(f.at+field, err.Error())
	}
	m, ok := v.(map[string]any)
	if !ok {
		return invalid(f.at+field, "must be an object")
	}
	return f.walk(label, field, m, 1)
}

func (f *flattener) walk(label, field string, m map[string]any, depth int) error {
	if depth > maxDepth {
		return invalid(f.at+field, fmt.Sprintf("nested more than %d levels deep", maxDepth))
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the first problem reported is the same on every call
	for _, k := range keys {
		if k == "" {
			return invalid(f.at+field, "property names must not be empty")
		}
		name, path := k, fieldPath(field, k)
		if label != "" {
			name = label + labelSep + k
		}
		switch x := m[k].(type) {
		case map[string]any:
			if err := f.walk(name, path, x, depth+1); err != nil {
				return err
			}
		case string, bool:
			if err := f.set(name, path, x); err != nil {
				return err
			}
		case json.Number:
			n, err := strconv.ParseFloat(string(x), 64)
			if err != nil || math.IsInf(n, 0) {
				return invalid(f.at+path, "number out of range")
			}
			if err := f.set(name, path, n); err != nil {
				return err
			}
		case nil, []any:
			// Absent, or a list: labels hold scalars only. A list stays in the
			// payload, hashed with the rest, but no rule can test it.
		}
	}
	return nil
}

// reserved reports whether a label name is in the namespace of an entity's members.
func reserved(label string) bool {
	for _, p := range []string{"subject", "action", "resource"} {
		if strings.HasPrefix(label, p+labelSep) {
			return true
		}
	}
	return false
}

// fieldPath appends a property name to a request field path, quoting a name that
// holds a dot or a bracket, so that {"a.b": 1} and {"a": {"b": 2}} are told apart.
func fieldPath(field, name string) string {
	if strings.ContainsAny(name, ".[]") {
		return field + "[" + strconv.Quote(name) + "]"
	}
	return field + "." + name
}

// requestField names, for an error the job service reports on a job field, the request
// field it came from, and rewrites the error to name it.
func requestField(err error, at string, src map[string]string) error {
	je, ok := jobs.AsError(err)
	if !ok || je.Field == "" {
		return err
	}
	field := je.Field
	switch {
	case field == "job.topic":
		field = at + "action.name"
	case field == "job.actor":
		field = at + "subject.id"
	case strings.HasPrefix(field, "job.labels."):
		name := strings.TrimPrefix(field, "job.labels.")
		if s, ok := src[name]; ok {
			field = at + s
		} else {
			field = at + "labels." + name // a label the policy's schema adds
		}
	case field == "job.payload":
		field = strings.TrimSuffix(at, ".")
		if field == "" {
			field = "body"
		}
	case strings.HasPrefix(field, "job.payload."):
		field = at + strings.TrimPrefix(field, "job.payload.")
	default:
		return err
	}
	out := *je
	out.Field, out.Msg = field, field+strings.TrimPrefix(je.Msg, je.Field)
	out.Meta = map[string]string{"field": field}
	return &out
}

// response is an AuthZEN Decision.
type response struct {
	Decision bool             `json:"decision"`
	Context  *decisionContext `json:"context,omitempty"`
}

// decisionContext is what Agate adds to a decision: the policy's own decision, the
// deciding rule, its reason and the snapshot, as gRPC's Evaluate answers them.
type decisionContext struct {
	PolicyDecision string `json:"policy_decision,omitempty"` // allow, deny or require_human
	RuleID         string `json:"rule_id,omitempty"`
	// Reason is the rule's reason; in a requestable denial, and a re-evaluation that
	// is not allowed, the profile's reason code, and the rule's reason is RuleReason.
	Reason       string       `json:"reason,omitempty"`
	RuleReason   string       `json:"rule_reason,omitempty"`
	NextAction   string       `json:"next_action,omitempty"`
	MatchedRules []string     `json:"matched_rules,omitempty"`
	SnapshotID   string       `json:"snapshot_id,omitempty"`
	JobHash      string       `json:"job_hash,omitempty"`
	Approval     *approvalRef `json:"approval,omitempty"` // a re-evaluation's
	// Repeat marks the allow of a re-evaluation whose job was already published: the
	// same enforcement answered again, not a second one.
	Repeat   bool      `json:"repeat,omitempty"`
	Required *approval `json:"approval_required,omitempty"`
	// A requestable denial's (ARAP): the binding by reference, and where to submit it.
	EvaluationID  string             `json:"evaluation_id,omitempty"`
	EvaluatedAt   string             `json:"evaluated_at,omitempty"`
	BindingHash   string             `json:"binding_hash,omitempty"`
	AccessRequest *accessRequestHint `json:"access_request,omitempty"`
	Error         *itemErr           `json:"error,omitempty"`
}

// approval is what a require_human decision asks for before the action may run.
type approval struct {
	Roles      []string `json:"roles"`
	Quorum     int      `json:"quorum"`
	TTLSeconds int64    `json:"ttl_seconds"`
}

// itemErr is the failure of one evaluation of a batch, which answers decision false.
type itemErr struct {
	Status  int    `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// answer maps Evaluate's result onto an AuthZEN decision: only allow is true. A
// require_human decision is false until approved, and says what approval it needs.
func answer(res jobs.EvaluateResult) response {
	out := res.Result
	c := &decisionContext{PolicyDecision: out.Decision.String(), RuleID: out.RuleID, Reason: out.Reason,
		MatchedRules: out.Matched, SnapshotID: res.Snapshot, JobHash: res.JobHash}
	if out.Decision == decision.RequireHuman {
		c.Required = &approval{Roles: out.Approval.Roles, Quorum: out.Approval.Quorum,
			TTLSeconds: int64(out.Approval.TTL.Seconds())}
	}
	return response{Decision: out.Decision == decision.Allow, Context: c}
}
