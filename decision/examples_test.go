package decision

import (
	"os"
	"reflect"
	"testing"
	"time"
)

// TestShippedExamples keeps examples/ honest: the policy loads without
// slip-past warnings and every case in policy_test.yaml passes.
func TestShippedExamples(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("../examples/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	if w := p.Warnings(); len(w) != 0 {
		t.Errorf("examples/policy.yaml has slip-past warnings: %v", w)
	}
	if p.RuleCount() != 2 {
		t.Errorf("RuleCount() = %d, want 2", p.RuleCount())
	}
	e, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	casesSrc, err := os.ReadFile("../examples/policy_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	suite, err := ParseCases(casesSrc)
	if err != nil {
		t.Fatal(err)
	}
	if suite.Len() < 6 {
		t.Errorf("only %d cases", suite.Len())
	}
	for _, r := range suite.Run(e) {
		if !r.Passed {
			t.Errorf("line %d: case %q: got %s, want %s", r.Line, r.Name, r.Got, r.Want)
		}
	}
	r, err := e.Evaluate(&Job{Topic: "finance.payment.execute", Actor: "agent-7", Labels: map[string]any{"env": "production"}})
	if err != nil {
		t.Fatal(err)
	}
	want := Approval{Roles: []string{"admin", "finance-approver"}, Quorum: 1, TTL: 24 * time.Hour}
	if !reflect.DeepEqual(r.Approval, want) {
		t.Errorf("approval = %+v, want %+v", r.Approval, want)
	}
	if r.Reason != "production payments need a human approval" {
		t.Errorf("reason = %q", r.Reason)
	}
}
