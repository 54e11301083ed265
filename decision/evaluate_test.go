package decision

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// matchPolicy exercises every matching rule of the language.
const matchPolicy = `version: v1
labels:
  env: {type: string, enum: [production, staging, dev]}
  scope_validated: {type: bool, default: false}
  amount: {type: number}
  tier: {type: string}
  flag: {type: string}
approval_defaults: {roles: [ops, admin], ttl: 2h}
rules:
  - id: scalar
    when: {topic: a.scalar, env: production}
    decision: allow
  - id: any-of
    when: {topic: a.anyof, env: [production, staging]}
    decision: deny
  - id: typed-string
    when: {topic: a.typed, flag: "true"}
    decision: deny
  - id: number
    when: {topic: a.number, amount: 1}
    decision: deny
  - id: default-false
    when: {topic: a.default, scope_validated: false}
    decision: deny
  - id: star
    when: {topic: w.*.run}
    decision: allow
  - id: gt
    when: {topic: "w.>"}
    decision: require_human
  - id: missing-label
    when: {topic: a.missing, tier: gold}
    decision: deny
  - id: combine-allow
    when: {topic: c.x}
    decision: allow
  - id: combine-human
    when: {topic: c.x, env: [production, staging]}
    decision: require_human
    reason: staging and production need a human
  - id: combine-deny
    when: {topic: c.x, env: production}
    decision: deny
    reason: never in production
  - id: combine-human-2
    when: {topic: [c.x, c.y]}
    decision: require_human
    approval: {roles: [boss], quorum: 2, ttl: 1d}
  - id: all-topics-dev
    when: {env: dev, tier: test}
    decision: allow
  - id: all-topics-empty-when
    when: {}
    decision: allow
    reason: everything matches this
`

func labels(kv ...any) map[string]any {
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func TestEvaluateMatching(t *testing.T) {
	t.Parallel()
	e := mustEngine(t, []byte(matchPolicy))
	const all = "all-topics-empty-when"
	cases := []struct {
		name     string
		topic    string
		labels   map[string]any
		decision Decision
		rule     string
		matched  []string
	}{
		{"scalar match", "a.scalar", labels("env", "production"), Allow, "scalar", []string{"scalar", all}},
		{"scalar mismatch", "a.scalar", labels("env", "staging"), Allow, all, []string{all}},
		{"list first item", "a.anyof", labels("env", "production"), Deny, "any-of", []string{"any-of", all}},
		{"list second item", "a.anyof", labels("env", "staging"), Deny, "any-of", []string{"any-of", all}},
		{"list no item", "a.anyof", labels("env", "dev"), Allow, all, []string{all}},
		{"string true matches string", "a.typed", labels("flag", "true"), Deny, "typed-string", []string{"typed-string", all}},
		{"number 1.0 equals 1", "a.number", labels("amount", 1.0), Deny, "number", []string{"number", all}},
		{"int equals 1", "a.number", labels("amount", 1), Deny, "number", []string{"number", all}},
		{"int64 equals 1", "a.number", labels("amount", int64(1)), Deny, "number", []string{"number", all}},
		{"number 2 differs", "a.number", labels("amount", 2.0), Allow, all, []string{all}},
		{"default used when missing", "a.default", nil, Deny, "default-false", []string{"default-false", all}},
		{"explicit false", "a.default", labels("scope_validated", false), Deny, "default-false", []string{"default-false", all}},
		{"explicit true", "a.default", labels("scope_validated", true), Allow, all, []string{all}},
		{"star one token", "w.x.run", nil, RequireHuman, "gt", []string{"star", "gt", all}},
		{"star not two tokens", "w.x.y.run", nil, RequireHuman, "gt", []string{"gt", all}},
		{"star not zero tokens", "w.run", nil, RequireHuman, "gt", []string{"gt", all}},
		{"gt needs a token", "w", nil, Allow, all, []string{all}},
		{"gt many tokens", "w.a.b.c.d", nil, RequireHuman, "gt", []string{"gt", all}},
		{"gt prefix is literal", "ww.a", nil, Allow, all, []string{all}},
		{"missing label never matches", "a.missing", nil, Allow, all, []string{all}},
		{"present label matches", "a.missing", labels("tier", "gold"), Deny, "missing-label", []string{"missing-label", all}},
		{"deny beats human and allow", "c.x", labels("env", "production"), Deny, "combine-deny",
			[]string{"combine-allow", "combine-human", "combine-deny", "combine-human-2", all}},
		{"first human rule decides", "c.x", labels("env", "staging"), RequireHuman, "combine-human",
			[]string{"combine-allow", "combine-human", "combine-human-2", all}},
		{"human beats allow", "c.x", nil, RequireHuman, "combine-human-2", []string{"combine-allow", "combine-human-2", all}},
		{"topic list", "c.y", nil, RequireHuman, "combine-human-2", []string{"combine-human-2", all}},
		{"topic-less rule", "z.z", labels("env", "dev", "tier", "test"), Allow, "all-topics-dev", []string{"all-topics-dev", all}},
		{"unicode topic", "ж.ü", nil, Allow, all, []string{all}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r, err := e.Evaluate(&Job{Topic: c.topic, Actor: "agent", Labels: c.labels})
			if err != nil {
				t.Fatal(err)
			}
			if r.Decision != c.decision || r.RuleID != c.rule || !reflect.DeepEqual(r.Matched, c.matched) {
				t.Errorf("got %v by %s, matched %v\nwant %v by %s, matched %v", r.Decision, r.RuleID, r.Matched, c.decision, c.rule, c.matched)
			}
			if (r.Decision == RequireHuman) != (r.Approval.Quorum > 0) {
				t.Errorf("approval %+v with decision %v", r.Approval, r.Decision)
			}
		})
	}
}

func TestEvaluateReasonsAndApprovals(t *testing.T) {
	t.Parallel()
	e := mustEngine(t, []byte(matchPolicy))
	cases := []struct {
		topic    string
		labels   map[string]any
		reason   string
		approval Approval
	}{
		{"c.x", labels("env", "production"), "never in production", Approval{}},
		{"c.x", labels("env", "staging"), "staging and production need a human", Approval{Roles: []string{"ops", "admin"}, Quorum: 1, TTL: 2 * time.Hour}},
		{"c.y", nil, "matched rule combine-human-2", Approval{Roles: []string{"boss"}, Quorum: 2, TTL: 24 * time.Hour}},
		{"w.a", nil, "matched rule gt", Approval{Roles: []string{"ops", "admin"}, Quorum: 1, TTL: 2 * time.Hour}},
		{"q", nil, "everything matches this", Approval{}},
	}
	for _, c := range cases {
		r, err := e.Evaluate(&Job{Topic: c.topic, Labels: c.labels})
		if err != nil {
			t.Fatal(err)
		}
		if r.Reason != c.reason || !reflect.DeepEqual(r.Approval, c.approval) {
			t.Errorf("%s: reason %q, approval %+v; want %q, %+v", c.topic, r.Reason, r.Approval, c.reason, c.approval)
		}
	}
	// The result is the caller's: changing it must not change the engine.
	r, _ := e.Evaluate(&Job{Topic: "c.y"})
	r.Approval.Roles[0] = "mallory"
	r.Matched[0] = "x"
	r2, _ := e.Evaluate(&Job{Topic: "c.y"})
	if r2.Approval.Roles[0] != "boss" || r2.Matched[0] != "combine-human-2" {
		t.Errorf("a caller's change leaked into the engine: %+v", r2)
	}
}

func TestEvaluateDefault(t *testing.T) {
	t.Parallel()
	builtin := Approval{Roles: []string{"admin"}, Quorum: 1, TTL: 24 * time.Hour}
	cases := []struct {
		name, src string
		want      Result
	}{
		{"absent default is allow", "version: v1\n",
			Result{Decision: Allow, RuleID: "default", Reason: "no rule matched; policy default is allow"}},
		{"default deny", "version: v1\ndefault: deny\nrules: []\n",
			Result{Decision: Deny, RuleID: "default", Reason: "no rule matched; policy default is deny"}},
		{"default require_human, built-in approval", "version: v1\ndefault: require_human\n",
			Result{Decision: RequireHuman, RuleID: "default", Reason: "no rule matched; policy default is require_human", Approval: builtin}},
		{"default require_human, approval_defaults", "version: v1\ndefault: require_human\napproval_defaults: {quorum: 2}\n",
			Result{Decision: RequireHuman, RuleID: "default", Reason: "no rule matched; policy default is require_human",
				Approval: Approval{Roles: []string{"admin"}, Quorum: 2, TTL: 24 * time.Hour}}},
		{"rule without approval uses the built-in default", "version: v1\nrules:\n  - id: h\n    decision: require_human\n",
			Result{Decision: RequireHuman, RuleID: "h", Reason: "matched rule h", Matched: []string{"h"}, Approval: builtin}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := mustEngine(t, []byte(c.src))
			got, err := e.Evaluate(&Job{Topic: "any.topic"})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestEvaluateLabelErrors(t *testing.T) {
	t.Parallel()
	e := mustEngine(t, []byte(`version: v1
labels:
  env: {type: string, enum: [production, dev], required: true}
  n: {type: number}
  ok: {type: bool, default: false}
`))
	cases := []struct {
		name   string
		labels map[string]any
		label  string // "" means no error
		msg    string
	}{
		{"valid", labels("env", "dev", "n", 3, "ok", true, "extra", "anything"), "", ""},
		{"required missing", labels("n", 1.0), "env", "is required"},
		{"not in enum", labels("env", "moon"), "env", "not allowed"},
		{"wrong type string for bool", labels("env", "dev", "ok", "false"), "ok", "want a bool"},
		{"wrong type bool for string", labels("env", true), "env", "want a string"},
		{"wrong type string for number", labels("env", "dev", "n", "1"), "n", "want a number"},
		{"nan", labels("env", "dev", "n", math.NaN()), "n", "finite"},
		{"inf", labels("env", "dev", "n", math.Inf(1)), "n", "finite"},
		{"huge int", labels("env", "dev", "n", int64(1)<<60), "n", "2^53"},
		{"huge uint", labels("env", "dev", "n", uint64(1)<<60), "n", "2^53"},
		{"undeclared non-scalar", labels("env", "dev", "zz", []any{1}), "zz", "string, bool or number"},
		{"undeclared null", labels("env", "dev", "aa", nil), "aa", "null"},
		{"first non-scalar by name", labels("env", "dev", "b", map[string]any{}, "a", []any{}), "a", "string, bool or number"},
		{"non-scalar before schema", labels("env", "moon", "x", struct{}{}), "x", "string, bool or number"},
		{"schema in name order", labels("env", "moon", "n", "1"), "env", "not allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for range 5 { // map order must not change the error
				_, err := e.Evaluate(&Job{Topic: "a.b", Labels: c.labels})
				if c.label == "" {
					if err != nil {
						t.Fatalf("unexpected error %v", err)
					}
					return
				}
				var le *LabelError
				if !errors.As(err, &le) {
					t.Fatalf("error %v (%T) is not a *LabelError", err, err)
				}
				if le.Label != c.label || !strings.Contains(le.Msg, c.msg) || !strings.Contains(err.Error(), c.label) {
					t.Fatalf("got %q (label %q), want label %q with %q", err, le.Label, c.label, c.msg)
				}
			}
		})
	}
}

func TestEvaluateRefusesBadJobs(t *testing.T) {
	t.Parallel()
	e := mustEngine(t, []byte("version: v1\n"))
	if _, err := e.Evaluate(nil); err == nil {
		t.Error("Evaluate(nil) succeeded")
	}
	for _, topic := range []string{"", "a.*", "a.>", "a..b", ".a", "a b"} {
		if _, err := e.Evaluate(&Job{Topic: topic}); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("topic %q: error %v, want ErrInvalidTopic", topic, err)
		}
	}
}

func TestValidateTopic(t *testing.T) {
	t.Parallel()
	valid := []string{"a", "finance.payment.execute", "a-b_c:d.e1", "ж.ü", "A.B", strings.Repeat("x.", 50) + "y"}
	invalid := []string{"", ".", "a.", ".a", "a..b", "*", "a.*", "a.>", ">", "fin*.x", "a>b", "a b", "a\tb", "a\x00b", "a\x7f",
		"a\u00a0b", "a\u2028b", "\xff", "a.\xc3"}
	for _, s := range valid {
		if err := ValidateTopic(s); err != nil {
			t.Errorf("ValidateTopic(%q) = %v", s, err)
		}
	}
	for _, s := range invalid {
		err := ValidateTopic(s)
		if !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("ValidateTopic(%q) = %v, want ErrInvalidTopic", s, err)
		}
	}
}

func TestDecisionNames(t *testing.T) {
	t.Parallel()
	for _, d := range []Decision{Allow, Deny, RequireHuman} {
		got, err := ParseDecision(d.String())
		if err != nil || got != d {
			t.Errorf("ParseDecision(%q) = %v, %v", d.String(), got, err)
		}
	}
	if Allow.String() != "allow" || Deny.String() != "deny" || RequireHuman.String() != "require_human" {
		t.Error("decision names changed")
	}
	for _, s := range []string{"", "Allow", "DENY", "require-human", "human"} {
		if _, err := ParseDecision(s); err == nil {
			t.Errorf("ParseDecision(%q) succeeded", s)
		}
	}
	if s := Decision(9).String(); s != "Decision(9)" {
		t.Errorf("Decision(9).String() = %q", s)
	}
}

func TestCompileNil(t *testing.T) {
	t.Parallel()
	if _, err := Compile(nil); err == nil {
		t.Error("Compile(nil) succeeded")
	}
	e, err := Compile(&Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := e.Evaluate(&Job{Topic: "a"}); err != nil || r.Decision != Allow || e.RuleCount() != 0 {
		t.Errorf("zero policy: %+v, %v", r, err)
	}
}

// TestEvaluateAllocs pins the allocation budget: none without a match, one
// (Matched and Roles together) with one.
func TestEvaluateAllocs(t *testing.T) {
	e := mustEngine(t, []byte(matchPolicy))
	for _, c := range []struct {
		job  *Job
		want float64
	}{
		{&Job{Topic: "c.x", Labels: labels("env", "production")}, 1},
		{&Job{Topic: "c.y"}, 1},
		{&Job{Topic: "w.a.b.c.d.e.f.g.h.i.j.run", Labels: labels("env", "dev", "tier", "x")}, 1},
	} {
		if got := testing.AllocsPerRun(100, func() { _, _ = e.Evaluate(c.job) }); got != c.want {
			t.Errorf("%s: %v allocs, want %v", c.job.Topic, got, c.want)
		}
	}
	e = mustEngine(t, []byte("version: v1\nrules:\n  - id: a\n    when: {topic: x}\n    decision: deny\n"))
	job := &Job{Topic: "y", Labels: labels("k", "v")}
	if got := testing.AllocsPerRun(100, func() { _, _ = e.Evaluate(job) }); got != 0 {
		t.Errorf("no match: %v allocs, want 0", got)
	}
}

// TestEvaluateAgreesWithNaive runs the index and the plain scan side by
// side on the generated 10,000-rule policy and on many matches per job.
func TestEvaluateAgreesWithNaive(t *testing.T) {
	t.Parallel()
	var many strings.Builder
	many.WriteString("version: v1\nrules:\n")
	for i := range 40 {
		d := []string{"allow", "require_human", "deny"}[i%3]
		if i < 20 {
			d = "allow"
		}
		fmt.Fprintf(&many, "  - {id: r%02d, decision: %s, when: {topic: [\"a.>\", \"*.b\", a.b]}}\n", i, d)
	}
	for _, src := range [][]byte{genPolicy(10000), []byte(many.String())} {
		p, err := Parse(src)
		if err != nil {
			t.Fatal(err)
		}
		e, err := Compile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, topic := range []string{"a.b", "team0.x.execute", "team1.service.execute", "team9999.service.execute",
			"team9990.anything.execute", "team9990.service.execute.now", "x.b", "a"} {
			for _, env := range []string{"production", "dev"} {
				job := &Job{Topic: topic, Labels: map[string]any{"env": env}}
				got, gotErr := e.Evaluate(job)
				want, wantErr := naiveEvaluate(p, job)
				if gotErr != nil || wantErr != nil || !reflect.DeepEqual(got, want) {
					t.Errorf("%s/%s: index %+v, %v\nnaive %+v, %v", topic, env, got, gotErr, want, wantErr)
				}
			}
		}
	}
	e := mustEngine(t, []byte(many.String()))
	r, _ := e.Evaluate(&Job{Topic: "a.b"})
	if len(r.Matched) != 40 || r.RuleID != "r20" || r.Decision != Deny {
		t.Errorf("40 matches: got %d matched, %s by %s", len(r.Matched), r.Decision, r.RuleID)
	}
}
