package decision

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

var ruleKeys = []string{"id", "when", "decision", "reason", "approval"}

func (p *parser) rules(n *yaml.Node, pol *Policy, hasSchema bool) {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "rules", "must be a list, not %s", describe(n))
		return
	}
	firstLine := make(map[string]int, len(n.Content))
	for i, rn := range n.Content {
		field := index("rules", i)
		r, ok := p.rule(rn, field, pol, hasSchema)
		if r.id != "" {
			if line, dup := firstLine[r.id]; dup {
				p.errorf(rn, join(field, "id"), "duplicate rule id %q (first used at line %d)", r.id, line)
				ok = false
			} else {
				firstLine[r.id] = rn.Line
			}
		}
		if ok {
			pol.rules = append(pol.rules, r)
		}
	}
}

// rule parses one rule. It returns the id even when the rule is invalid, so
// duplicate ids are still caught.
func (p *parser) rule(n *yaml.Node, field string, pol *Policy, hasSchema bool) (rule, bool) {
	entries, ok := p.mapping(n, field, ruleKeys...)
	if !ok {
		return rule{}, false
	}
	before := len(p.errs)
	r := rule{line: n.Line}
	var idNode, decNode, whenNode, apprNode *yaml.Node
	for _, e := range entries {
		f := join(field, e.name)
		switch e.name {
		case "id":
			idNode = e.val
			if s, ok := p.str(e.val, f); ok {
				if msg := ruleIDProblem(s); msg != "" {
					p.errorf(e.val, f, "%s", msg)
				} else {
					r.id = s
				}
			}
		case "decision":
			decNode = e.val
			if s, ok := p.str(e.val, f); ok {
				d, err := ParseDecision(s)
				if err != nil {
					p.errorf(e.val, f, "%v", err)
				}
				r.decision = d
			}
		case "reason":
			if s, ok := p.str(e.val, f); ok {
				if strings.TrimSpace(s) == "" {
					p.errorf(e.val, f, "must not be empty (leave it out to use the generated reason)")
				}
				r.reason = s
			}
		case "when":
			whenNode = e.val
		case "approval":
			if !isNull(e.val) {
				apprNode = e.val
			}
		}
	}
	if idNode == nil {
		p.errorf(n, join(field, "id"), "is required")
	}
	if decNode == nil {
		p.errorf(n, join(field, "decision"), "is required (allow, deny or require_human)")
	}
	if whenNode != nil && !isNull(whenNode) {
		p.when(whenNode, join(field, "when"), &r, pol, hasSchema)
	}
	var appr approvalSpec
	if apprNode != nil {
		f := join(field, "approval")
		if r.decision != 0 && r.decision != RequireHuman {
			p.errorf(apprNode, f, "is only allowed with decision require_human")
		} else {
			appr = p.approval(apprNode, f)
		}
	}
	if r.decision == RequireHuman {
		r.approval = appr.over(pol.defaults)
	}
	if r.reason == "" {
		r.reason = "matched rule " + r.id
	}
	return r, len(p.errs) == before
}

func (p *parser) when(n *yaml.Node, field string, r *rule, pol *Policy, hasSchema bool) {
	entries, ok := p.mapping(n, field)
	if !ok {
		return
	}
	for _, e := range entries {
		f := join(field, e.name)
		items := []*yaml.Node{e.val}
		if e.val.Kind == yaml.SequenceNode {
			if items, ok = p.list(e.val, f); !ok {
				continue
			}
		}
		itemField := func(i int) string {
			if e.val.Kind == yaml.SequenceNode {
				return index(f, i)
			}
			return f
		}
		if e.name == "topic" {
			r.topics = []topicPattern{}
			for i, item := range items {
				s, ok := p.str(item, itemField(i))
				if !ok {
					continue
				}
				pat, msg := parsePattern(s)
				if msg != "" {
					p.errorf(item, itemField(i), "%s", msg)
					continue
				}
				r.topics = append(r.topics, pat)
			}
			continue
		}
		if msg := nameProblem(e.name); msg != "" {
			p.errorf(e.key, f, "%s", msg)
			continue
		}
		spec := pol.labels[e.name]
		if hasSchema && spec == nil {
			p.errorf(e.key, f, "label %q is not declared in labels (declared: %s)", e.name, declared(pol))
			continue
		}
		c := cond{label: e.name, line: e.key.Line}
		for i, item := range items {
			s, ok := p.scalarValue(item, itemField(i))
			if !ok {
				continue
			}
			if spec != nil && !spec.allows(s) {
				p.errorf(item, itemField(i), "value %s does not fit label %q (%s)", s, e.name, describeSpec(spec))
				continue
			}
			c.vals = append(c.vals, s)
		}
		r.conds = append(r.conds, c)
	}
}

func declared(pol *Policy) string {
	if len(pol.labelNames) == 0 {
		return "none"
	}
	return strings.Join(pol.labelNames, ", ")
}

func describeSpec(l *labelSpec) string {
	if len(l.enum) == 0 {
		return "type " + l.kind.String()
	}
	vals := make([]string, len(l.enum))
	for i, e := range l.enum {
		vals[i] = e.String()
	}
	return fmt.Sprintf("type %s, one of %s", l.kind, strings.Join(vals, ", "))
}

var approvalKeys = []string{"roles", "quorum", "ttl"}

// approvalSpec is an approval block as written: zero fields are unset and
// fall back to approval_defaults, then to the built-in default.
type approvalSpec struct {
	roles  []string
	quorum int
	ttl    time.Duration
}

// over fills the unset fields of a from base.
func (a approvalSpec) over(base Approval) Approval {
	out := base
	if a.roles != nil {
		out.Roles = a.roles
	}
	if a.quorum != 0 {
		out.Quorum = a.quorum
	}
	if a.ttl != 0 {
		out.TTL = a.ttl
	}
	return out
}

func (p *parser) approval(n *yaml.Node, field string) approvalSpec {
	var a approvalSpec
	entries, ok := p.mapping(n, field, approvalKeys...)
	if !ok {
		return a
	}
	for _, e := range entries {
		f := join(field, e.name)
		switch e.name {
		case "roles":
			items, ok := p.list(e.val, f)
			if !ok {
				continue
			}
			roles := make([]string, 0, len(items))
			for i, item := range items {
				s, ok := p.str(item, index(f, i))
				if !ok {
					continue
				}
				switch msg := nameProblem(s); {
				case msg != "":
					p.errorf(item, index(f, i), "%s", msg)
				case contains(roles, s):
					p.errorf(item, index(f, i), "duplicate role %q", s)
				case IsServiceRole(s):
					p.serviceRole(item, index(f, i), s)
					roles = append(roles, s)
				default:
					roles = append(roles, s)
				}
			}
			a.roles = roles
		case "quorum":
			if q, ok := p.integer(e.val, f); ok {
				if q < 1 {
					p.errorf(e.val, f, "must be at least 1")
				} else {
					a.quorum = q
				}
			}
		case "ttl":
			s, ok := p.str(e.val, f)
			if !ok {
				continue
			}
			d, msg := parseTTL(s)
			if msg != "" {
				p.errorf(e.val, f, "%s", msg)
				continue
			}
			a.ttl = d
		}
	}
	return a
}

// parseTTL reads a Go duration (90m, 24h) or a whole number of days (7d).
func parseTTL(s string) (time.Duration, string) {
	bad := fmt.Sprintf("%q is not a duration (want a positive duration such as 90m, 24h or 7d)", s)
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok && days != "" && strings.Trim(days, "0123456789") == "" {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n > math.MaxInt64/int64(24*time.Hour) {
			return 0, bad
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, bad
		}
	}
	if d <= 0 {
		return 0, bad
	}
	return d, ""
}

// serviceRole reports a service role named as an approver role: an error in a new
// policy, a warning in a stored one (whose approvals under it the lifecycle refuses).
func (p *parser) serviceRole(n *yaml.Node, field, role string) {
	const why = "is a service role, and service roles may not approve (one principal could then approve and publish)"
	if p.strict {
		p.errorf(n, field, "%q %s", role, why)
		return
	}
	p.serviceRoles = append(p.serviceRoles, Warning{Line: n.Line,
		Msg: fmt.Sprintf("%s: %q %s; approvals under it are refused", field, role, why)})
}
