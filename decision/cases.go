package decision

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// CaseSuite is a parsed file of policy test cases: jobs and the decisions
// a policy must give them (`agate policy test`).
type CaseSuite struct {
	cases []testCase
}

// CaseResult is the outcome of one case.
type CaseResult struct {
	Name   string
	Line   int // the case's line in the cases file
	Passed bool
	Got    string // what the policy gave, in words
	Want   string // what the case expects, in words
}

type testCase struct {
	name string
	line int
	job  Job
	want expectation
}

type expectation struct {
	decision   Decision
	rule       string
	reason     string
	hasReason  bool
	matched    []string
	hasMatched bool
	errLabel   string // expects a LabelError naming this label ("topic": an invalid topic)
}

var (
	caseKeys   = []string{"name", "job", "expect"}
	jobKeys    = []string{"topic", "actor", "labels"}
	expectKeys = []string{"decision", "rule", "reason", "matched", "error"}
)

// ParseCases reads a cases file:
//
//	cases:
//	  - name: production payment needs a human
//	    job: {topic: finance.payment.execute, actor: agent-7, labels: {env: production}}
//	    expect: {decision: require_human, rule: require-approval-prod-finance}
//	  - name: labels breaking the schema are refused
//	    job: {topic: x.y, actor: a, labels: {env: moon}}
//	    expect: {error: env}   # a LabelError naming this label
//
// expect may also give `matched` (the ids of every matched rule, in policy
// order) and `reason`. Errors are *PolicyError values, as from Parse.
func ParseCases(src []byte) (*CaseSuite, error) {
	root, err := decodeDocument(src)
	if err != nil {
		return nil, err
	}
	if root == nil {
		return nil, &PolicyError{Line: 1, Field: "cases", Msg: "is required (the file is empty)"}
	}
	var p parser
	p.checkPlain(root)
	if len(p.errs) > 0 {
		return nil, p.sorted()
	}
	s := p.caseSuite(root)
	if len(p.errs) > 0 {
		return nil, p.sorted()
	}
	return s, nil
}

// Len returns the number of cases.
func (s *CaseSuite) Len() int { return len(s.cases) }

func (p *parser) caseSuite(root *yaml.Node) *CaseSuite {
	entries, ok := p.mapping(root, "", "cases")
	if !ok {
		return nil
	}
	if len(entries) == 0 {
		p.errorf(root, "cases", "is required")
		return nil
	}
	list, ok := p.caseList(entries[0].val)
	if !ok {
		return nil
	}
	s := &CaseSuite{}
	firstLine := map[string]int{}
	for i, n := range list {
		field := index("cases", i)
		c, ok := p.testCase(n, field)
		if !ok {
			continue
		}
		if line, dup := firstLine[c.name]; dup {
			p.errorf(n, join(field, "name"), "duplicate case name %q (first used at line %d)", c.name, line)
			continue
		}
		firstLine[c.name] = c.line
		s.cases = append(s.cases, c)
	}
	return s
}

func (p *parser) caseList(n *yaml.Node) ([]*yaml.Node, bool) {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "cases", "must be a list, not %s", describe(n))
		return nil, false
	}
	if len(n.Content) == 0 {
		p.errorf(n, "cases", "list must not be empty")
		return nil, false
	}
	return n.Content, true
}

func (p *parser) testCase(n *yaml.Node, field string) (testCase, bool) {
	entries, ok := p.mapping(n, field, caseKeys...)
	if !ok {
		return testCase{}, false
	}
	before := len(p.errs)
	c := testCase{line: n.Line}
	seen := map[string]bool{}
	for _, e := range entries {
		seen[e.name] = true
		f := join(field, e.name)
		switch e.name {
		case "name":
			if s, ok := p.str(e.val, f); ok {
				if strings.TrimSpace(s) == "" {
					p.errorf(e.val, f, "must not be empty")
				}
				c.name = s
			}
		case "job":
			c.job = p.caseJob(e.val, f)
		case "expect":
			c.want = p.expectation(e.val, f)
		}
	}
	for _, k := range caseKeys {
		if !seen[k] {
			p.errorf(n, join(field, k), "is required")
		}
	}
	return c, len(p.errs) == before
}

func (p *parser) caseJob(n *yaml.Node, field string) Job {
	var j Job
	entries, ok := p.mapping(n, field, jobKeys...)
	if !ok {
		return j
	}
	hasTopic := false
	for _, e := range entries {
		f := join(field, e.name)
		switch e.name {
		case "topic":
			hasTopic = true
			j.Topic, _ = p.str(e.val, f)
		case "actor":
			j.Actor, _ = p.str(e.val, f)
		case "labels":
			if isNull(e.val) {
				continue
			}
			labels, ok := p.mapping(e.val, f)
			if !ok {
				continue
			}
			j.Labels = make(map[string]any, len(labels))
			for _, l := range labels {
				if s, ok := p.scalarValue(l.val, join(f, l.name)); ok {
					j.Labels[l.name] = s.value()
				}
			}
		}
	}
	if !hasTopic {
		p.errorf(n, join(field, "topic"), "is required")
	}
	return j
}

func (p *parser) expectation(n *yaml.Node, field string) expectation {
	var x expectation
	entries, ok := p.mapping(n, field, expectKeys...)
	if !ok {
		return x
	}
	var errNode *yaml.Node
	for _, e := range entries {
		f := join(field, e.name)
		switch e.name {
		case "decision":
			if s, ok := p.str(e.val, f); ok {
				d, err := ParseDecision(s)
				if err != nil {
					p.errorf(e.val, f, "%v", err)
				}
				x.decision = d
			}
		case "rule":
			x.rule, _ = p.str(e.val, f)
		case "reason":
			x.reason, x.hasReason = p.str(e.val, f)
		case "matched":
			x.hasMatched = true
			if e.val.Kind != yaml.SequenceNode {
				p.errorf(e.val, f, "must be a list of rule ids, not %s", describe(e.val))
				continue
			}
			for i, item := range e.val.Content {
				if s, ok := p.str(item, index(f, i)); ok {
					x.matched = append(x.matched, s)
				}
			}
		case "error":
			errNode = e.val
			if s, ok := p.str(e.val, f); ok {
				if s == "" {
					p.errorf(e.val, f, "must name the label the error is about")
				}
				x.errLabel = s
			}
		}
	}
	switch {
	case errNode != nil && (x.decision != 0 || x.rule != "" || x.hasReason || x.hasMatched):
		p.errorf(errNode, join(field, "error"), "cannot be combined with decision, rule, reason or matched")
	case errNode == nil && x.decision == 0 && !slices.ContainsFunc(entries, func(e entry) bool { return e.name == "decision" }):
		p.errorf(n, join(field, "decision"), "is required unless error is given")
	}
	return x
}

// Run evaluates every case against e, in file order.
func (s *CaseSuite) Run(e *Engine) []CaseResult {
	out := make([]CaseResult, 0, len(s.cases))
	for i := range s.cases {
		out = append(out, s.cases[i].run(e))
	}
	return out
}

func (c *testCase) run(e *Engine) CaseResult {
	job := c.job
	res, err := e.Evaluate(&job)
	out := CaseResult{Name: c.name, Line: c.line, Want: c.want.String()}
	if err != nil {
		out.Got = "error: " + err.Error()
		var le *LabelError
		switch {
		case c.want.errLabel == "":
		case errors.As(err, &le):
			out.Passed = le.Label == c.want.errLabel
		case errors.Is(err, ErrInvalidTopic):
			out.Passed = c.want.errLabel == "topic"
		}
		return out
	}
	out.Got = c.want.describe(res)
	out.Passed = c.want.errLabel == "" &&
		res.Decision == c.want.decision &&
		(c.want.rule == "" || res.RuleID == c.want.rule) &&
		(!c.want.hasReason || res.Reason == c.want.reason) &&
		(!c.want.hasMatched || slices.Equal(res.Matched, c.want.matched))
	return out
}

// String renders the expectation, for CaseResult.Want.
func (x expectation) String() string {
	if x.errLabel == "topic" {
		return "error: invalid topic"
	}
	if x.errLabel != "" {
		return fmt.Sprintf("error on label %q", x.errLabel)
	}
	var b strings.Builder
	b.WriteString(x.decision.String())
	if x.rule != "" {
		b.WriteString(" by rule " + x.rule)
	}
	x.suffix(&b, x.matched, x.reason)
	return b.String()
}

// describe renders a result in the shape of the expectation, so Got and
// Want read side by side.
func (x expectation) describe(r Result) string {
	var b strings.Builder
	b.WriteString(r.Decision.String() + " by rule " + r.RuleID)
	x.suffix(&b, r.Matched, r.Reason)
	return b.String()
}

func (x expectation) suffix(b *strings.Builder, matched []string, reason string) {
	if x.hasMatched {
		b.WriteString(", matched [" + strings.Join(matched, ", ") + "]")
	}
	if x.hasReason {
		b.WriteString(", reason " + strconv.Quote(reason))
	}
}
