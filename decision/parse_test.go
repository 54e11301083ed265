package decision

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseReferencePolicyUnchanged(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("testdata/reference.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(src)
	if err != nil {
		t.Fatalf("reference policy: %v", err)
	}
	if p.RuleCount() != 2 || p.Default() != Allow || len(p.Labels()) != 0 {
		t.Errorf("rules=%d default=%v labels=%v", p.RuleCount(), p.Default(), p.Labels())
	}
	var got []string
	for _, w := range p.Warnings() {
		got = append(got, w.RuleID+"/"+w.Label)
		if !strings.Contains(w.Msg, w.RuleID) || !strings.Contains(w.Msg, w.Label) {
			t.Errorf("warning %q does not name its rule and label", w.Msg)
		}
	}
	want := []string{
		"require-approval-prod-finance/env",
		"deny-unscoped-external-export/destination",
		"deny-unscoped-external-export/scope_validated",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("warnings = %v, want %v", got, want)
	}
	if lines := []int{p.Warnings()[0].Line, p.Warnings()[1].Line, p.Warnings()[2].Line}; !reflect.DeepEqual(lines, []int{6, 12, 13}) {
		t.Errorf("warning lines = %v, want [6 12 13]", lines)
	}
}

func TestParseFullLanguage(t *testing.T) {
	t.Parallel()
	src := `version: v1
default: deny
labels:
  env: {type: string, enum: [production, staging, dev], required: true}
  amount: {type: number}
  scope_validated: {type: bool, default: false}
  destination: {type: string, enum: [internal, external], default: external}
approval_defaults: {roles: [ops], ttl: 2h}
rules:
  - id: a
    when: {topic: "finance.>", env: [production, staging]}
    decision: require_human
    reason: money moves
    approval: {roles: [admin, finance-approver], quorum: 2, ttl: 7d}
  - id: b
    when: {topic: [x.*.y, x.z], amount: 10}
    decision: require_human
    approval: {quorum: 3}
  - id: c
    decision: allow
  - id: d
    when: {}
    decision: deny
    approval: null
`
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if p.Default() != Deny || p.RuleCount() != 4 {
		t.Fatalf("default=%v rules=%d", p.Default(), p.RuleCount())
	}
	if w := p.Warnings(); len(w) != 1 || w[0].RuleID != "b" || w[0].Label != "amount" || w[0].Line != 16 {
		t.Errorf("warnings = %+v, want one for b/amount at line 16", w)
	}
	wantLabels := map[string]LabelSpec{
		"env":             {Type: "string", Enum: []any{"production", "staging", "dev"}, Required: true},
		"amount":          {Type: "number"},
		"scope_validated": {Type: "bool", Default: false, HasDefault: true},
		"destination":     {Type: "string", Enum: []any{"internal", "external"}, Default: "external", HasDefault: true},
	}
	if got := p.Labels(); !reflect.DeepEqual(got, wantLabels) {
		t.Errorf("labels = %#v\nwant %#v", got, wantLabels)
	}
	wantApproval := map[string]Approval{
		"a": {Roles: []string{"admin", "finance-approver"}, Quorum: 2, TTL: 7 * 24 * time.Hour},
		"b": {Roles: []string{"ops"}, Quorum: 3, TTL: 2 * time.Hour}, // per-key fallback to approval_defaults, then built-in
	}
	for _, r := range p.rules {
		if want, ok := wantApproval[r.id]; ok && !reflect.DeepEqual(r.approval, want) {
			t.Errorf("rule %s approval = %+v, want %+v", r.id, r.approval, want)
		}
	}
	if p.rules[0].reason != "money moves" || p.rules[1].reason != "matched rule b" {
		t.Errorf("reasons = %q, %q", p.rules[0].reason, p.rules[1].reason)
	}
}

func TestParseTTL(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want time.Duration
	}{
		{"24h", 24 * time.Hour}, {"90m", 90 * time.Minute}, {"1h30m", 90 * time.Minute},
		{"7d", 7 * 24 * time.Hour}, {"1d", 24 * time.Hour},
		{"0d", 0}, {"0s", 0}, {"-1h", 0}, {"d", 0}, {"1.5d", 0}, {"1d2h", 0}, {"99999999999d", 0}, {"", 0}, {"soon", 0},
	} {
		got, msg := parseTTL(c.in)
		if got != c.want || (c.want == 0) != (msg != "") {
			t.Errorf("parseTTL(%q) = %v, %q; want %v", c.in, got, msg, c.want)
		}
	}
}

// TestParseErrors checks that each mistake is refused with the line and the
// field path of the offending node.
func TestParseErrors(t *testing.T) {
	t.Parallel()
	const head = "version: v1\n"
	schema := head + "labels:\n  env: {type: string, enum: [production, dev]}\n  n: {type: number}\n"
	cases := []struct {
		name, src string
		line      int
		field     string
		msg       string // a substring of the message
	}{
		{"empty", "", 1, "version", "is required"},
		{"comment only", "# nothing\n", 1, "version", "is required"},
		{"not a mapping", "- a\n- b\n", 1, "", "must be a mapping"},
		{"syntax", "version: v1\nrules: [\n", 2, "", "invalid YAML"},
		{"tab indentation", "version: v1\nrules:\n\t- id: a\n", 3, "", "invalid YAML"},
		{"unclosed flow sequence", "version: v1\nrules:\n  - id: a\n    decision: allow\n    when: {topic: [a, b}\n", 5, "", "invalid YAML"},
		{"unclosed flow mapping", "version: v1\nrules:\n  - id: a\n    when: {topic: a\n    decision: allow\n", 4, "", "invalid YAML"},
		{"two documents", "version: v1\n---\nversion: v1\n", 2, "", "only one YAML document"},
		{"missing version", "rules: []\n", 1, "version", "is required"},
		{"wrong version", "version: v2\n", 1, "version", `unsupported version "v2"`},
		{"numeric version", "version: 1\n", 1, "version", "must be a string"},
		{"unknown top key", head + "rulez: []\n", 2, "rulez", "unknown key"},
		{"duplicate top key", head + "version: v1\n", 2, "version", "duplicate key"},
		{"unknown default", head + "default: maybe\n", 2, "default", `unknown decision "maybe"`},
		{"null default", head + "default:\n", 2, "default", "must be a string"},
		{"rules not a list", head + "rules: {id: a}\n", 2, "rules", "must be a list"},
		{"rule not a mapping", head + "rules:\n  - a\n", 3, "rules[0]", "must be a mapping"},
		{"missing id", head + "rules:\n  - decision: deny\n", 3, "rules[0].id", "is required"},
		{"empty id", head + "rules:\n  - id: ''\n    decision: deny\n", 3, "rules[0].id", "must not be empty"},
		{"bad id", head + "rules:\n  - id: a/b\n    decision: deny\n", 3, "rules[0].id", "may only contain"},
		{"long id", head + "rules:\n  - id: " + strings.Repeat("a", 129) + "\n    decision: deny\n", 3, "rules[0].id", "at most 128"},
		{"reserved id", head + "rules:\n  - id: default\n    decision: deny\n", 3, "rules[0].id", "reserved"},
		{"numeric id", head + "rules:\n  - id: 12\n    decision: deny\n", 3, "rules[0].id", "must be a string"},
		{"duplicate rule id", head + "rules:\n  - id: a\n    decision: deny\n  - id: a\n    decision: allow\n", 5, "rules[1].id", "first used at line 3"},
		{"missing decision", head + "rules:\n  - id: a\n", 3, "rules[0].decision", "is required"},
		{"unknown decision", head + "rules:\n  - id: a\n    decision: block\n", 4, "rules[0].decision", `unknown decision "block"`},
		{"bool decision", head + "rules:\n  - id: a\n    decision: true\n", 4, "rules[0].decision", "must be a string"},
		{"unknown rule key", head + "rules:\n  - id: a\n    decision: deny\n    priority: 1\n", 5, "rules[0].priority", "unknown key"},
		{"duplicate rule key", head + "rules:\n  - id: a\n    decision: deny\n    decision: allow\n", 5, "rules[0].decision", "duplicate key"},
		{"empty reason", head + "rules:\n  - id: a\n    decision: deny\n    reason: ''\n", 5, "rules[0].reason", "must not be empty"},
		{"when not a mapping", head + "rules:\n  - id: a\n    decision: deny\n    when: [a]\n", 5, "rules[0].when", "must be a mapping"},
		{"duplicate when key", head + "rules:\n  - id: a\n    decision: deny\n    when:\n      env: a\n      env: b\n", 7, "rules[0].when.env", "duplicate key"},
		{"null when value", head + "rules:\n  - id: a\n    decision: deny\n    when: {env: null}\n", 5, "rules[0].when.env", "not null"},
		{"map when value", head + "rules:\n  - id: a\n    decision: deny\n    when:\n      env: {a: b}\n", 6, "rules[0].when.env", "not a mapping"},
		{"empty list", head + "rules:\n  - id: a\n    decision: deny\n    when: {env: []}\n", 5, "rules[0].when.env", "must not be empty"},
		{"nested list", head + "rules:\n  - id: a\n    decision: deny\n    when:\n      env:\n        - a\n        - [b]\n", 8, "rules[0].when.env[1]", "not a list"},
		{"infinite number", head + "rules:\n  - id: a\n    decision: deny\n    when: {n: .inf}\n", 5, "rules[0].when.n", "finite"},
		{"huge integer", head + "rules:\n  - id: a\n    decision: deny\n    when: {n: 9007199254740993}\n", 5, "rules[0].when.n", "2^53"},
		{"bad label name", head + "rules:\n  - id: a\n    decision: deny\n    when: {\"a b\": x}\n", 5, "rules[0].when.a b", "whitespace"},
		{"topic number", head + "rules:\n  - id: a\n    decision: deny\n    when: {topic: 12}\n", 5, "rules[0].when.topic", "must be a string"},
		{"topic mixes wildcard", head + "rules:\n  - id: a\n    decision: deny\n    when: {topic: fin*.payment}\n", 5, "rules[0].when.topic", "mixes a wildcard"},
		{"topic gt not last", head + "rules:\n  - id: a\n    decision: deny\n    when: {topic: \"a.>.b\"}\n", 5, "rules[0].when.topic", "only allowed as the last"},
		{"topic empty token", head + "rules:\n  - id: a\n    decision: deny\n    when: {topic: a..b}\n", 5, "rules[0].when.topic", "empty token"},
		{"topic leading dot", head + "rules:\n  - id: a\n    decision: deny\n    when: {topic: .a}\n", 5, "rules[0].when.topic", "empty token"},
		{"topic trailing dot", head + "rules:\n  - id: a\n    decision: deny\n    when: {topic: a.}\n", 5, "rules[0].when.topic", "empty token"},
		{"topic empty", head + "rules:\n  - id: a\n    decision: deny\n    when: {topic: ''}\n", 5, "rules[0].when.topic", "empty"},
		{"topic space", head + "rules:\n  - id: a\n    decision: deny\n    when: {topic: a b.c}\n", 5, "rules[0].when.topic", "whitespace"},
		{"topic list item", head + "rules:\n  - id: a\n    decision: deny\n    when:\n      topic:\n        - a.b\n        - a.b*\n", 8, "rules[0].when.topic[1]", "mixes a wildcard"},
		{"approval on deny", head + "rules:\n  - id: a\n    decision: deny\n    approval: {quorum: 1}\n", 5, "rules[0].approval", "only allowed with decision require_human"},
		{"approval unknown key", head + "rules:\n  - id: a\n    decision: require_human\n    approval: {role: admin}\n", 5, "rules[0].approval.role", "unknown key"},
		{"approval empty roles", head + "rules:\n  - id: a\n    decision: require_human\n    approval: {roles: []}\n", 5, "rules[0].approval.roles", "must not be empty"},
		{"approval roles scalar", head + "rules:\n  - id: a\n    decision: require_human\n    approval: {roles: admin}\n", 5, "rules[0].approval.roles", "must be a list"},
		{"approval duplicate role", head + "rules:\n  - id: a\n    decision: require_human\n    approval: {roles: [a, a]}\n", 5, "rules[0].approval.roles[1]", "duplicate role"},
		{"approval bad role", head + "rules:\n  - id: a\n    decision: require_human\n    approval: {roles: [\"\"]}\n", 5, "rules[0].approval.roles[0]", "empty"},
		{"approval zero quorum", head + "rules:\n  - id: a\n    decision: require_human\n    approval: {quorum: 0}\n", 5, "rules[0].approval.quorum", "at least 1"},
		{"approval float quorum", head + "rules:\n  - id: a\n    decision: require_human\n    approval: {quorum: 1.5}\n", 5, "rules[0].approval.quorum", "must be an integer"},
		{"approval bad ttl", head + "rules:\n  - id: a\n    decision: require_human\n    approval: {ttl: 3 days}\n", 5, "rules[0].approval.ttl", "not a duration"},
		{"approval zero ttl", head + "rules:\n  - id: a\n    decision: require_human\n    approval: {ttl: 0s}\n", 5, "rules[0].approval.ttl", "not a duration"},
		{"approval numeric ttl", head + "rules:\n  - id: a\n    decision: require_human\n    approval: {ttl: 3600}\n", 5, "rules[0].approval.ttl", "must be a string"},
		{"approval_defaults bad", head + "approval_defaults: {quorum: -1}\n", 2, "approval_defaults.quorum", "at least 1"},
		{"approval_defaults not a map", head + "approval_defaults: [admin]\n", 2, "approval_defaults", "must be a mapping"},
		{"labels not a map", head + "labels: [env]\n", 2, "labels", "must be a mapping"},
		{"label spec scalar", head + "labels:\n  env: string\n", 3, "labels.env", "must be a mapping"},
		{"label missing type", head + "labels:\n  env: {required: true}\n", 3, "labels.env.type", "is required"},
		{"label unknown type", head + "labels:\n  env: {type: int}\n", 3, "labels.env.type", `unknown type "int"`},
		{"label unknown key", head + "labels:\n  env: {type: string, values: [a]}\n", 3, "labels.env.values", "unknown key"},
		{"label named topic", head + "labels:\n  topic: {type: string}\n", 3, "labels.topic", "not a label"},
		{"enum wrong type", head + "labels:\n  env:\n    type: string\n    enum: [a, 1]\n", 5, "labels.env.enum[1]", "is not a string"},
		{"enum duplicate", head + "labels:\n  env: {type: string, enum: [a, a]}\n", 3, "labels.env.enum[1]", "duplicate value"},
		{"enum empty", head + "labels:\n  env: {type: string, enum: []}\n", 3, "labels.env.enum", "must not be empty"},
		{"enum bool string", head + "labels:\n  ok: {type: bool, enum: [\"true\"]}\n", 3, "labels.ok.enum[0]", "is not a bool"},
		{"default wrong type", head + "labels:\n  ok: {type: bool, default: \"false\"}\n", 3, "labels.ok.default", "is not a bool"},
		{"default not in enum", head + "labels:\n  env: {type: string, enum: [a, b], default: c}\n", 3, "labels.env.default", "not in enum"},
		{"required and default", head + "labels:\n  env:\n    type: string\n    required: true\n    default: a\n", 5, "labels.env.required", "both required and have a default"},
		{"required not bool", head + "labels:\n  env: {type: string, required: yes}\n", 3, "labels.env.required", "must be true or false"},
		{"undeclared label", schema + "rules:\n  - id: a\n    decision: deny\n    when: {enviroment: production}\n", 8, "rules[0].when.enviroment", "not declared in labels (declared: env, n)"},
		{"when value not in enum", schema + "rules:\n  - id: a\n    decision: deny\n    when: {env: prod}\n", 8, "rules[0].when.env", "does not fit label \"env\""},
		{"when value wrong type", schema + "rules:\n  - id: a\n    decision: deny\n    when: {n: \"10\"}\n", 8, "rules[0].when.n", "type number"},
		{"when list item wrong type", schema + "rules:\n  - id: a\n    decision: deny\n    when:\n      n: [1, \"2\"]\n", 9, "rules[0].when.n[1]", "type number"},
		{"alias", head + "x: &a 1\n", 2, "x", "unknown key"},
		{"alias use", head + "rules:\n  - &r {id: a, decision: deny}\n  - *r\n", 4, "", "aliases are not supported"},
		{"merge key", head + "rules:\n  - <<: {id: a}\n    decision: deny\n", 3, "", "merge keys"},
		{"custom tag", head + "rules:\n  - id: a\n    decision: deny\n    when: {env: !foo x}\n", 5, "rules[0].when.env", "tagged !foo"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p, err := Parse([]byte(c.src))
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", c.src)
			}
			if p != nil {
				t.Errorf("Parse returned a policy with an error")
			}
			var pe *PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T) is not a *PolicyError", err, err)
			}
			if pe.Line != c.line || pe.Field != c.field || !strings.Contains(pe.Msg, c.msg) {
				t.Errorf("first error = line %d, field %q, msg %q\nwant line %d, field %q, msg containing %q\nall: %v",
					pe.Line, pe.Field, pe.Msg, c.line, c.field, c.msg, err)
			}
		})
	}
}

func TestParseReportsEveryError(t *testing.T) {
	t.Parallel()
	src := `version: v1
rules:
  - id: a
    decision: nope
  - id: b
    when: {topic: "x.>.y"}
    decision: deny
    extra: true
`
	_, err := Parse([]byte(src))
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %v is not joined", err)
	}
	var lines []int
	for _, e := range joined.Unwrap() {
		lines = append(lines, e.(*PolicyError).Line)
	}
	if !reflect.DeepEqual(lines, []int{4, 6, 8}) {
		t.Errorf("error lines = %v, want [4 6 8]; %v", lines, err)
	}
	want := "line 4: rules[0].decision: unknown decision \"nope\" (want allow, deny or require_human)"
	if first := strings.SplitN(err.Error(), "\n", 2)[0]; first != want {
		t.Errorf("first line = %q, want %q", first, want)
	}
}

func TestPolicyErrorFormat(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		e    PolicyError
		want string
	}{
		{PolicyError{Line: 7, Field: "rules[1].when.env", Msg: "value must be a string"}, "line 7: rules[1].when.env: value must be a string"},
		{PolicyError{Line: 3, Msg: "invalid YAML: x"}, "line 3: invalid YAML: x"},
		{PolicyError{Field: "version", Msg: "m"}, "version: m"},
		{PolicyError{Msg: "m"}, "m"},
	} {
		if got := c.e.Error(); got != c.want {
			t.Errorf("Error() = %q, want %q", got, c.want)
		}
	}
}

func TestParseScalarTyping(t *testing.T) {
	t.Parallel()
	src := `version: v1
rules:
  - id: a
    when: {s: "true", b: true, n: 1, f: 1.5, h: 0x10, d: 2024-01-02, q: "1"}
    decision: allow
`
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]scalar{}
	for _, c := range p.rules[0].conds {
		got[c.label] = c.vals[0]
	}
	want := map[string]scalar{
		"s": stringScalar("true"), "b": boolScalar(true), "n": numberScalar(1), "f": numberScalar(1.5),
		"h": numberScalar(16), "d": stringScalar("2024-01-02"), "q": stringScalar("1"),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("values = %v, want %v", got, want)
	}
}

// A new policy may not let a service role approve; a stored one that does keeps loading,
// with a warning, so old snapshots stay readable and auditable.
func TestServiceRolesMayNotApprove(t *testing.T) {
	t.Parallel()
	for _, role := range ServiceRoles() {
		for _, where := range []struct{ src, field string }{
			{"version: v1\nrules:\n  - id: a\n    decision: require_human\n    approval: {roles: [admin, " + role + "]}\n", "rules[0].approval.roles[1]"},
			{"version: v1\napproval_defaults: {roles: [" + role + "]}\n", "approval_defaults.roles[0]"},
		} {
			_, err := ParseNew([]byte(where.src))
			var pe *PolicyError
			if !errors.As(err, &pe) || pe.Field != where.field || !strings.Contains(pe.Msg, "service role") {
				t.Errorf("ParseNew with approver role %q: %v, want an error at %s", role, err, where.field)
			}
			pol, err := Parse([]byte(where.src))
			if err != nil {
				t.Fatalf("Parse (stored snapshot) with approver role %q: %v", role, err)
			}
			warned := false
			for _, w := range pol.Warnings() {
				warned = warned || strings.Contains(w.Msg, where.field) && strings.Contains(w.Msg, role)
			}
			eng, err := Compile(pol)
			if err != nil || !warned || len(eng.Warnings()) != len(pol.Warnings()) {
				t.Errorf("Parse with approver role %q: warnings %v, engine %v", role, pol.Warnings(), err)
			}
		}
	}
	if _, err := ParseNew([]byte("version: v1\napproval_defaults: {roles: [admin, Dispatch-team]}\n")); err != nil {
		t.Errorf("ordinary roles refused: %v", err)
	}
}
