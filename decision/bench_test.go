package decision

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// genPolicy returns a policy of n rules on distinct topics; every tenth
// rule uses a `*` wildcard so the trie is exercised too.
func genPolicy(n int) []byte {
	var b strings.Builder
	b.WriteString("version: v1\nlabels:\n  env: {type: string, enum: [production, staging, dev], required: true}\nrules:\n")
	decisions := []string{"deny", "require_human", "allow"}
	for i := range n {
		topic := fmt.Sprintf("team%d.service.execute", i)
		if i%10 == 0 {
			topic = fmt.Sprintf("team%d.*.execute", i)
		}
		fmt.Fprintf(&b, "  - id: rule-%d\n    when: {topic: %s, env: production}\n    decision: %s\n", i, topic, decisions[i%3])
	}
	return []byte(b.String())
}

func mustEngine(tb testing.TB, src []byte) *Engine {
	tb.Helper()
	p, err := Parse(src)
	if err != nil {
		tb.Fatal(err)
	}
	e, err := Compile(p)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

func BenchmarkEvaluate(b *testing.B) {
	ref, err := os.ReadFile("testdata/reference.yaml")
	if err != nil {
		b.Fatal(err)
	}
	suites := []struct {
		name   string
		src    []byte
		match  *Job
		nomach *Job
		want   string // the deciding rule of the matching job
	}{
		{
			name:   "reference",
			src:    ref,
			match:  &Job{Topic: "customer.data.export", Actor: "agent-7", Labels: map[string]any{"destination": "external", "scope_validated": false}},
			nomach: &Job{Topic: "customer.data.export", Actor: "agent-7", Labels: map[string]any{"destination": "internal", "scope_validated": false}},
			want:   "deny-unscoped-external-export",
		},
		{
			name:   "rules10k",
			src:    genPolicy(10000),
			match:  &Job{Topic: "team5001.service.execute", Actor: "agent-7", Labels: map[string]any{"env": "production"}},
			nomach: &Job{Topic: "team5001.service.execute", Actor: "agent-7", Labels: map[string]any{"env": "staging"}},
			want:   "rule-5001",
		},
	}
	for _, s := range suites {
		e := mustEngine(b, s.src)
		for _, c := range []struct {
			name string
			job  *Job
			want string
		}{{"match", s.match, s.want}, {"nomatch", s.nomach, DefaultRuleID}} {
			b.Run(s.name+"/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					r, err := e.Evaluate(c.job)
					if err != nil || r.RuleID != c.want {
						b.Fatalf("got %+v, %v; want rule %s", r, err, c.want)
					}
				}
			})
		}
	}
}

func BenchmarkParse(b *testing.B) {
	src := genPolicy(1000)
	b.ReportAllocs()
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if _, err := Parse(src); err != nil {
			b.Fatal(err)
		}
	}
}
