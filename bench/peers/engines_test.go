package peers

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/agate-pdp/agate/decision"
)

// suite is one policy in both languages.
type suite struct {
	name string
	yaml []byte
	rego map[string]string // Rego module name -> source, besides combine.rego
}

func readFile(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func loadSuite(tb testing.TB, name string) suite {
	tb.Helper()
	switch name {
	case "reference":
		return suite{name, readFile(tb, "../../decision/testdata/reference.yaml"),
			map[string]string{"reference.rego": string(readFile(tb, "testdata/reference.rego"))}}
	case "example":
		return suite{name, readFile(tb, "../../examples/policy.yaml"),
			map[string]string{"example.rego": string(readFile(tb, "testdata/example.rego"))}}
	case "rules1k", "rules10k":
		y, r := GenPolicy(map[string]int{"rules1k": 1000, "rules10k": 10000}[name])
		return suite{name, []byte(y), map[string]string{name + ".rego": r}}
	case "overlap":
		return suite{name, []byte(overlapYAML), map[string]string{"overlap.rego": overlapRego}}
	}
	tb.Fatalf("no suite %q", name)
	return suite{}
}

// The overlap policy exercises combination: several rules match one job.
const overlapYAML = `version: v1
rules:
  - {id: a-allow, when: {topic: "x.>"}, decision: allow}
  - {id: b-human, when: {topic: x.y}, decision: require_human}
  - {id: c-human, when: {topic: "x.*"}, decision: require_human}
  - {id: d-deny, when: {topic: x.y, env: production}, decision: deny}
`

const overlapRego = `package agate

matched contains [0, "a-allow", "allow"] if glob.match("x.**", ["."], input.topic)

matched contains [1, "b-human", "require_human"] if input.topic == "x.y"

matched contains [2, "c-human", "require_human"] if glob.match("x.*", ["."], input.topic)

matched contains [3, "d-deny", "deny"] if {
	input.topic == "x.y"
	input.labels.env == "production"
}
`

// engines holds one policy compiled by both engines.
type engines struct {
	agate *decision.Engine
	opa   rego.PreparedEvalQuery
}

func prepare(tb testing.TB, s suite) engines {
	tb.Helper()
	p, err := decision.Parse(s.yaml)
	if err != nil {
		tb.Fatalf("%s: %v", s.name, err)
	}
	e, err := decision.Compile(p)
	if err != nil {
		tb.Fatalf("%s: %v", s.name, err)
	}
	opts := []func(*rego.Rego){rego.Query("data.agate.result"),
		rego.Module("combine.rego", string(readFile(tb, "testdata/combine.rego")))}
	for name, src := range s.rego {
		opts = append(opts, rego.Module(name, src))
	}
	pq, err := rego.New(opts...).PrepareForEval(context.Background())
	if err != nil {
		tb.Fatalf("%s: preparing the Rego query: %v", s.name, err)
	}
	return engines{agate: e, opa: pq}
}

// outcome is what both engines must agree on.
type outcome struct {
	Decision string
	RuleID   string
	Matched  []string
	ErrLabel string // the label a schema error names, first by name
}

func agateOutcome(t *testing.T, e *decision.Engine, j *decision.Job) outcome {
	t.Helper()
	r, err := e.Evaluate(j)
	if le := (*decision.LabelError)(nil); errors.As(err, &le) {
		return outcome{ErrLabel: le.Label}
	}
	if err != nil {
		t.Fatalf("agate: %v", err)
	}
	return outcome{Decision: r.Decision.String(), RuleID: r.RuleID, Matched: r.Matched}
}

func opaOutcome(t *testing.T, pq rego.PreparedEvalQuery, in map[string]any) outcome {
	t.Helper()
	rs, err := pq.Eval(context.Background(), rego.EvalInput(in))
	if err != nil || len(rs) != 1 {
		t.Fatalf("opa: %v, %d results", err, len(rs))
	}
	m := rs[0].Expressions[0].Value.(map[string]any)
	if errs, ok := m["error"].([]any); ok {
		return outcome{ErrLabel: errs[0].(string)}
	}
	o := outcome{Decision: m["decision"].(string), RuleID: m["rule_id"].(string)}
	for _, id := range m["matched"].([]any) {
		o.Matched = append(o.Matched, id.(string))
	}
	return o
}

// input is a job as OPA's input document.
func input(j *decision.Job) map[string]any {
	in := map[string]any{"topic": j.Topic, "actor": j.Actor}
	if j.Labels != nil {
		in["labels"] = j.Labels
	}
	return in
}

func job(topic string, labels map[string]any) *decision.Job {
	return &decision.Job{Topic: topic, Actor: "agent-7", Labels: labels}
}

type labels = map[string]any

func TestEquivalence(t *testing.T) {
	t.Parallel()
	prod, staging := labels{"env": "production"}, labels{"env": "staging"}
	generated := func(n string) []*decision.Job {
		return []*decision.Job{
			job("team"+n+"1.service.execute", prod), // deny
			job("team"+n+"1.service.execute", staging),
			job("team"+n+"0.service.execute", prod), // the wildcard rule
			job("team"+n+"0.a.execute", prod),
			job("team1.service.execute", prod), // require_human
			job("team2.service.execute", prod), // allow
			job("team10.a.b.execute", prod),    // * is one token
			job("team"+n+"1.service.execute", nil),
			job("team"+n+"1.service.execute", labels{"env": "moon"}),
			job("team"+n+"1.service.execute", labels{"env": true}),
		}
	}
	tests := []struct {
		suite string
		jobs  []*decision.Job
	}{
		{"reference", []*decision.Job{
			job("finance.payment.execute", prod),
			job("finance.payment.execute", staging),
			job("customer.data.export", labels{"destination": "external", "scope_validated": false}),
			job("customer.data.export", labels{"destination": "internal", "scope_validated": false}),
			job("customer.data.export", labels{"destination": "external", "scope_validated": true}),
			job("customer.data.export", labels{"destination": "external", "scope_validated": "false"}),
			job("customer.data.export", nil),
			job("crm.contact.read", prod),
		}},
		{"example", []*decision.Job{
			job("finance.payment.execute", prod),
			job("finance.payment.execute", staging),
			job("customer.data.export", labels{"env": "production", "destination": "external", "scope_validated": false}),
			job("customer.data.export", labels{"env": "production"}),
			job("customer.data.export", labels{"env": "production", "destination": "external", "scope_validated": true}),
			job("customer.data.export", labels{"env": "dev", "destination": "internal"}),
			job("crm.contact.read", prod),
			job("finance.payment.execute", labels{"env": "moon"}),
			job("finance.payment.execute", nil),
			job("customer.data.export", labels{"env": "dev", "scope_validated": "false"}),
			job("customer.data.export", labels{"env": "dev", "destination": "elsewhere"}),
		}},
		{"overlap", []*decision.Job{
			job("x.y", staging), job("x.y", prod), job("x.z", nil), job("x.z.w", nil), job("y.x", nil),
		}},
		{"rules1k", generated("50")},
		{"rules10k", generated("500")},
	}
	for _, tt := range tests {
		t.Run(tt.suite, func(t *testing.T) {
			t.Parallel()
			e := prepare(t, loadSuite(t, tt.suite))
			kinds := map[string]bool{}
			for _, j := range tt.jobs {
				want := agateOutcome(t, e.agate, j)
				got := opaOutcome(t, e.opa, input(j))
				if got.Decision != want.Decision || got.RuleID != want.RuleID || got.ErrLabel != want.ErrLabel ||
					!slices.Equal(got.Matched, want.Matched) {
					t.Errorf("%s %v: OPA %+v; Agate %+v", j.Topic, j.Labels, got, want)
				}
				kinds[want.Decision+want.ErrLabel] = true
			}
			// The jobs must exercise more than one outcome, or agreement proves little.
			if len(kinds) < 3 {
				t.Errorf("only %d distinct outcomes: %v", len(kinds), kinds)
			}
		})
	}
}

// BenchmarkEngines times one evaluation of the inputs of decision/bench_test.go
// (plus a 1,000-rule policy) by Agate's engine, by OPA's prepared query given
// the job as Go values (as a Go service would call it), and by the same query
// given input already converted to OPA's AST (OPA's best case).
func BenchmarkEngines(b *testing.B) {
	tests := []struct {
		suite          string
		match, nomatch *decision.Job
		want           string
	}{
		{"reference",
			job("customer.data.export", labels{"destination": "external", "scope_validated": false}),
			job("customer.data.export", labels{"destination": "internal", "scope_validated": false}),
			"deny-unscoped-external-export"},
		{"rules1k", job("team501.service.execute", labels{"env": "production"}),
			job("team501.service.execute", labels{"env": "staging"}), "rule-501"},
		{"rules10k", job("team5001.service.execute", labels{"env": "production"}),
			job("team5001.service.execute", labels{"env": "staging"}), "rule-5001"},
	}
	for _, tt := range tests {
		e := prepare(b, loadSuite(b, tt.suite))
		for _, c := range []struct {
			name string
			job  *decision.Job
			want string
		}{{"match", tt.match, tt.want}, {"nomatch", tt.nomatch, decision.DefaultRuleID}} {
			prefix := tt.suite + "/" + c.name + "/"
			b.Run(prefix+"agate", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if r, err := e.agate.Evaluate(c.job); err != nil || r.RuleID != c.want {
						b.Fatalf("got %+v, %v; want rule %s", r, err, c.want)
					}
				}
			})
			in := input(c.job)
			b.Run(prefix+"opa", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					rs, err := e.opa.Eval(b.Context(), rego.EvalInput(in))
					checkRule(b, rs, err, c.want)
				}
			})
			parsed, err := ast.InterfaceToValue(in)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(prefix+"opa-parsed", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					rs, err := e.opa.Eval(b.Context(), rego.EvalParsedInput(parsed))
					checkRule(b, rs, err, c.want)
				}
			})
		}
	}
}

func checkRule(b *testing.B, rs rego.ResultSet, err error, want string) {
	if err != nil || len(rs) != 1 {
		b.Fatalf("opa: %v, %d results", err, len(rs))
	}
	if got := rs[0].Expressions[0].Value.(map[string]any)["rule_id"]; got != want {
		b.Fatalf("opa decided by %v; want %s", got, want)
	}
}
