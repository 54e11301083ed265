package decision

import (
	"fmt"
	"slices"
	"strings"
)

// Evaluate decides a job. It returns a *LabelError when a label is not a
// scalar or breaks the schema, and an error wrapping ErrInvalidTopic when
// the topic is not a valid concrete topic. The result's Matched and
// Approval.Roles share one allocation; the result is the caller's to keep.
func (e *Engine) Evaluate(j *Job) (Result, error) {
	if j == nil {
		return Result{}, errNilJob
	}
	if topicProblem(j.Topic) != "" {
		return Result{}, ValidateTopic(j.Topic)
	}
	if err := e.checkLabels(j.Labels); err != nil {
		return Result{}, err
	}
	// Most jobs match a handful of rules; the array keeps them off the heap.
	// The slice is passed and returned rather than kept in a struct so that
	// escape analysis can leave buf on the stack.
	var buf [16]int32
	m := matcher{rules: e.rules, labels: j.Labels}
	matched := m.consider(buf[:0], e.anyTopic)
	if list, ok := e.exact[j.Topic]; ok {
		matched = m.consider(matched, list)
	}
	if e.trie != nil {
		matched = m.walk(matched, e.trie, j.Topic)
	}
	return e.result(matched), nil
}

// checkLabels refuses non-scalar label values and labels that break the
// schema. Problems are reported in a fixed order (non-scalars first, by
// name; then declared labels by name) so the same job always gets the same
// error.
func (e *Engine) checkLabels(labels map[string]any) error {
	for _, v := range labels {
		if _, msg := scalarOf(v); msg != "" {
			return firstNonScalar(labels)
		}
	}
	for _, spec := range e.schema {
		v, ok := labels[spec.name]
		if !ok {
			if spec.required {
				return &LabelError{Label: spec.name, Msg: "is required"}
			}
			continue
		}
		s, _ := scalarOf(v)
		if s.k != spec.kind {
			return &LabelError{Label: spec.name, Msg: fmt.Sprintf("value %s is a %s; want a %s", s, s.k, spec.kind)}
		}
		if !spec.allows(s) {
			return &LabelError{Label: spec.name, Msg: fmt.Sprintf("value %s is not allowed (%s)", s, describeSpec(spec))}
		}
	}
	return nil
}

func firstNonScalar(labels map[string]any) error {
	var bad *LabelError
	for name, v := range labels {
		if _, msg := scalarOf(v); msg != "" && (bad == nil || name < bad.Label) {
			bad = &LabelError{Label: name, Msg: msg}
		}
	}
	return bad
}

// matcher finds the rules that match one job's labels.
type matcher struct {
	rules  []compiledRule
	labels map[string]any
}

func (m *matcher) consider(matched, list []int32) []int32 {
	for _, i := range list {
		if m.rules[i].matches(m.labels) {
			matched = append(matched, i)
		}
	}
	return matched
}

// walk adds the matches of the wildcard trie. It walks iteratively with its
// own small stack: a recursive walk would force matched onto the heap.
func (m *matcher) walk(matched []int32, root *trieNode, topic string) []int32 {
	type state struct {
		n    *trieNode
		rest string // the tokens still to match; never empty
	}
	var buf [8]state
	stack := append(buf[:0], state{root, topic})
	for len(stack) > 0 {
		st := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if st.n.rest != nil {
			matched = m.consider(matched, st.n.rest) // `>` takes the one or more tokens left
		}
		tok, rest, more := strings.Cut(st.rest, ".")
		for _, c := range [2]*trieNode{st.n.children[tok], st.n.star} {
			switch {
			case c == nil:
			case more:
				stack = append(stack, state{c, rest})
			case c.end != nil:
				matched = m.consider(matched, c.end)
			}
		}
	}
	return matched
}

// matches reports whether every label test of r holds for labels, which
// checkLabels has already validated.
func (r *compiledRule) matches(labels map[string]any) bool {
	for k := range r.conds {
		c := &r.conds[k]
		var s scalar
		if v, ok := labels[c.label]; ok {
			s, _ = scalarOf(v)
		} else if c.hasDef {
			s = c.def
		} else {
			return false
		}
		if !containsScalar(c.vals, s) {
			return false
		}
	}
	return true
}

func containsScalar(vals []scalar, s scalar) bool {
	for i := range vals {
		if vals[i].equal(s) {
			return true
		}
	}
	return false
}

// result combines the matched rules: deny > require_human > allow, and the
// first rule in policy order at the winning level decides.
func (e *Engine) result(matched []int32) Result {
	if len(matched) == 0 {
		res := Result{Decision: e.def, RuleID: DefaultRuleID, Reason: e.defReason}
		if e.def == RequireHuman {
			res.Approval = e.defApproval
			res.Approval.Roles = slices.Clone(e.defApproval.Roles)
		}
		return res
	}
	// Candidates come from several index lists; a rule with several topic
	// patterns may appear twice.
	slices.Sort(matched)
	matched = slices.Compact(matched)
	best := matched[0]
	for _, i := range matched[1:] {
		if e.rules[i].decision.strength() > e.rules[best].decision.strength() {
			best = i
		}
	}
	r := &e.rules[best]
	n := len(matched)
	var nroles int
	if r.decision == RequireHuman {
		nroles = len(r.approval.Roles)
	}
	ids := make([]string, n+nroles)
	for k, i := range matched {
		ids[k] = e.rules[i].id
	}
	res := Result{Decision: r.decision, RuleID: r.id, Reason: r.reason, Matched: ids[:n:n]}
	if r.decision == RequireHuman {
		res.Approval = r.approval
		res.Approval.Roles = ids[n:]
		copy(res.Approval.Roles, r.approval.Roles)
	}
	return res
}
