package decision

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/cases")

// splitCaseFile splits a testdata/cases file into its policy and its cases,
// two YAML documents separated by a `---` line.
func splitCaseFile(t *testing.T, src []byte) (policy, cases []byte) {
	t.Helper()
	policy, cases, ok := bytes.Cut(src, []byte("\n---\n"))
	if !ok {
		t.Fatal("a case file holds a policy, a --- line, then the cases")
	}
	return policy, cases
}

// TestCaseFiles runs every testdata/cases file: each case must pass, and
// the full results (reason, approval, errors) must match the golden file.
func TestCaseFiles(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/cases/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no case files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			policySrc, casesSrc := splitCaseFile(t, src)
			e := mustEngine(t, policySrc)
			suite, err := ParseCases(casesSrc)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range suite.Run(e) {
				if !r.Passed {
					t.Errorf("case %q: got %s, want %s", r.Name, r.Got, r.Want)
				}
			}
			checkGolden(t, strings.TrimSuffix(file, ".yaml")+".golden", renderResults(e, suite))
		})
	}
}

// renderResults writes the complete result of every case, for golden files.
func renderResults(e *Engine, s *CaseSuite) []byte {
	var b bytes.Buffer
	for _, c := range s.cases {
		job := c.job
		r, err := e.Evaluate(&job)
		fmt.Fprintf(&b, "%s\n", c.name)
		if err != nil {
			fmt.Fprintf(&b, "  error: %v\n", err)
			continue
		}
		fmt.Fprintf(&b, "  decision: %s\n  rule: %s\n  reason: %s\n  matched: %v\n", r.Decision, r.RuleID, r.Reason, r.Matched)
		if r.Decision == RequireHuman {
			fmt.Fprintf(&b, "  approval: roles %v, quorum %d, ttl %s\n", r.Approval.Roles, r.Approval.Quorum, r.Approval.TTL)
		}
	}
	return b.Bytes()
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./decision -run TestCaseFiles -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("results differ from %s (rerun with -update if the change is intended)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestRunReportsFailures(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("testdata/reference.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := mustEngine(t, src)
	suite, err := ParseCases([]byte(`cases:
  - name: wrong decision
    job: {topic: finance.payment.execute, labels: {env: production}}
    expect: {decision: allow}
  - name: wrong rule
    job: {topic: finance.payment.execute, labels: {env: production}}
    expect: {decision: require_human, rule: other}
  - name: wrong matched
    job: {topic: finance.payment.execute, labels: {env: production}}
    expect: {decision: require_human, matched: []}
  - name: wrong reason
    job: {topic: finance.payment.execute, labels: {env: production}}
    expect: {decision: require_human, reason: nope}
  - name: error expected, decision given
    job: {topic: a.b}
    expect: {error: env}
  - name: decision expected, error given
    job: {topic: "a.*"}
    expect: {decision: allow}
  - name: label error on the wrong label
    job: {topic: a..b}
    expect: {error: env}
  - name: passes
    job: {topic: finance.payment.execute, actor: a, labels: {env: production}}
    expect: {decision: require_human, rule: require-approval-prod-finance, matched: [require-approval-prod-finance], reason: matched rule require-approval-prod-finance}
`))
	if err != nil {
		t.Fatal(err)
	}
	if suite.Len() != 8 {
		t.Fatalf("Len() = %d", suite.Len())
	}
	results := suite.Run(e)
	wantGot := []string{
		"require_human by rule require-approval-prod-finance",
		"require_human by rule require-approval-prod-finance",
		"require_human by rule require-approval-prod-finance, matched [require-approval-prod-finance]",
		`require_human by rule require-approval-prod-finance, reason "matched rule require-approval-prod-finance"`,
		"allow by rule default",
		`error: invalid topic "a.*": wildcards are only allowed in policy patterns`,
		"error: invalid topic \"a..b\": empty token (leading, trailing or double dot)",
	}
	for i, r := range results[:7] {
		if r.Passed {
			t.Errorf("case %q passed; got %s, want %s", r.Name, r.Got, r.Want)
		}
		if r.Got != wantGot[i] {
			t.Errorf("case %q: Got = %q, want %q", r.Name, r.Got, wantGot[i])
		}
	}
	if last := results[7]; !last.Passed || last.Line != 23 {
		t.Errorf("last case: %+v", last)
	}
	if results[4].Want != `error on label "env"` || results[0].Want != "allow" || results[1].Want != "require_human by rule other" {
		t.Errorf("Want strings: %q, %q, %q", results[4].Want, results[0].Want, results[1].Want)
	}
}

func TestParseCasesErrors(t *testing.T) {
	t.Parallel()
	const job = "    job: {topic: a.b}\n"
	cases := []struct {
		name, src string
		line      int
		field     string
		msg       string
	}{
		{"empty", "", 1, "cases", "is required"},
		{"no cases key", "{}\n", 1, "cases", "is required"},
		{"unknown top key", "cases: []\npolicy: x\n", 1, "cases", "must not be empty"},
		{"unknown top key only", "tests: []\n", 1, "tests", "unknown key"},
		{"cases not a list", "cases: {}\n", 1, "cases", "must be a list"},
		{"case not a mapping", "cases:\n  - x\n", 2, "cases[0]", "must be a mapping"},
		{"missing name", "cases:\n  - job: {topic: a}\n    expect: {decision: allow}\n", 2, "cases[0].name", "is required"},
		{"empty name", "cases:\n  - name: ' '\n" + job + "    expect: {decision: allow}\n", 2, "cases[0].name", "must not be empty"},
		{"duplicate name", "cases:\n  - name: a\n" + job + "    expect: {decision: allow}\n  - name: a\n" + job + "    expect: {decision: allow}\n",
			5, "cases[1].name", "duplicate case name"},
		{"missing job", "cases:\n  - name: a\n    expect: {decision: allow}\n", 2, "cases[0].job", "is required"},
		{"missing expect", "cases:\n  - name: a\n" + job, 2, "cases[0].expect", "is required"},
		{"unknown case key", "cases:\n  - name: a\n" + job + "    expect: {decision: allow}\n    skip: true\n", 5, "cases[0].skip", "unknown key"},
		{"job missing topic", "cases:\n  - name: a\n    job: {actor: x}\n    expect: {decision: allow}\n", 3, "cases[0].job.topic", "is required"},
		{"job unknown key", "cases:\n  - name: a\n    job: {topic: a, payload: {}}\n    expect: {decision: allow}\n", 3, "cases[0].job.payload", "unknown key"},
		{"job label not scalar", "cases:\n  - name: a\n    job: {topic: a, labels: {x: [1]}}\n    expect: {decision: allow}\n", 3, "cases[0].job.labels.x", "not a list"},
		{"job labels not a map", "cases:\n  - name: a\n    job: {topic: a, labels: [x]}\n    expect: {decision: allow}\n", 3, "cases[0].job.labels", "must be a mapping"},
		{"expect unknown key", "cases:\n  - name: a\n" + job + "    expect: {decision: allow, rules: x}\n", 4, "cases[0].expect.rules", "unknown key"},
		{"expect bad decision", "cases:\n  - name: a\n" + job + "    expect: {decision: permit}\n", 4, "cases[0].expect.decision", "unknown decision"},
		{"expect nothing", "cases:\n  - name: a\n" + job + "    expect: {rule: x}\n", 4, "cases[0].expect.decision", "is required unless error"},
		{"expect error and decision", "cases:\n  - name: a\n" + job + "    expect: {decision: allow, error: env}\n", 4, "cases[0].expect.error", "cannot be combined"},
		{"expect matched scalar", "cases:\n  - name: a\n" + job + "    expect: {decision: allow, matched: x}\n", 4, "cases[0].expect.matched", "must be a list"},
		{"syntax", "cases:\n  - name: [\n", 2, "", "invalid YAML"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseCases([]byte(c.src))
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
