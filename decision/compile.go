package decision

import (
	"errors"
	"slices"
)

// Engine is a compiled policy. It is immutable and safe for concurrent use.
type Engine struct {
	def         Decision
	defReason   string
	defApproval Approval

	rules []compiledRule
	// The topic index. A job's candidate rules are the union of anyTopic,
	// exact[topic] and the trie's matches; each list holds rule indexes in
	// policy order.
	anyTopic []int32
	exact    map[string][]int32
	trie     *trieNode

	schema []*labelSpec // declared labels, sorted by name

	warnings []Warning // the policy's, for whoever loads a stored snapshot
}

type compiledRule struct {
	id       string
	reason   string
	decision Decision
	conds    []compiledCond
	approval Approval
}

// compiledCond is a label test with the schema default folded in, so
// evaluation needs no schema lookup.
type compiledCond struct {
	label  string
	vals   []scalar
	def    scalar
	hasDef bool
}

// trieNode indexes wildcard topic patterns token by token.
type trieNode struct {
	children map[string]*trieNode // literal next tokens
	star     *trieNode            // `*`: any one token
	rest     []int32              // rules whose pattern continues with `>` here
	end      []int32              // rules whose pattern ends at this node
}

func (n *trieNode) child(tok string) *trieNode {
	if tok == "*" {
		if n.star == nil {
			n.star = &trieNode{}
		}
		return n.star
	}
	c := n.children[tok]
	if c == nil {
		if n.children == nil {
			n.children = map[string]*trieNode{}
		}
		c = &trieNode{}
		n.children[tok] = c
	}
	return c
}

// Compile builds the evaluation index of a parsed policy.
func Compile(p *Policy) (*Engine, error) {
	if p == nil {
		return nil, errors.New("decision: Compile of a nil policy")
	}
	e := &Engine{
		def:   p.Default(),
		exact: map[string][]int32{},
		rules: make([]compiledRule, len(p.rules)),

		warnings: p.Warnings(),
	}
	e.defReason = "no rule matched; policy default is " + e.def.String()
	if e.def == RequireHuman {
		e.defApproval = p.defaults
	}
	for _, name := range p.labelNames {
		e.schema = append(e.schema, p.labels[name])
	}
	for i, r := range p.rules {
		cr := compiledRule{id: r.id, reason: r.reason, decision: r.decision}
		if r.decision == RequireHuman {
			cr.approval = r.approval
		}
		for _, c := range r.conds {
			cc := compiledCond{label: c.label, vals: c.vals}
			if spec := p.labels[c.label]; spec != nil && spec.hasDefault {
				cc.def, cc.hasDef = spec.def, true
			}
			cr.conds = append(cr.conds, cc)
		}
		e.rules[i] = cr
		e.index(int32(i), r.topics)
	}
	return e, nil
}

// index files rule i under each of its topic patterns.
func (e *Engine) index(i int32, topics []topicPattern) {
	if topics == nil {
		e.anyTopic = append(e.anyTopic, i)
		return
	}
	for _, pat := range topics {
		if !pat.wildcard() {
			e.exact[pat.raw] = appendOnce(e.exact[pat.raw], i)
			continue
		}
		if e.trie == nil {
			e.trie = &trieNode{}
		}
		n := e.trie
		for _, tok := range pat.tokens {
			if tok == ">" {
				n.rest = appendOnce(n.rest, i)
				break
			}
			n = n.child(tok)
		}
		if pat.tokens[len(pat.tokens)-1] != ">" {
			n.end = appendOnce(n.end, i)
		}
	}
}

// appendOnce appends i unless it is already last, which happens when one
// rule lists the same pattern twice.
func appendOnce(list []int32, i int32) []int32 {
	if len(list) > 0 && list[len(list)-1] == i {
		return list
	}
	return append(list, i)
}

// RuleCount returns the number of rules.
func (e *Engine) RuleCount() int { return len(e.rules) }

// Warnings returns the warnings of the compiled policy.
func (e *Engine) Warnings() []Warning { return slices.Clone(e.warnings) }

// Default returns the decision for a job that no rule matches.
func (e *Engine) Default() Decision { return e.def }
