package decision

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Version is the only policy language version.
const Version = "v1"

var topKeys = []string{"version", "default", "labels", "approval_defaults", "rules"}

// Parse reads and validates a policy. Every problem found is reported as a
// *PolicyError naming its line and field; several are joined with
// errors.Join, in line order.
//
// Parse is for stored snapshots, which must keep loading: a service role named as an
// approver role (see IsServiceRole) is a warning, and the lifecycle refuses approvals
// under it. New policies go through ParseNew, which refuses it.
func Parse(src []byte) (*Policy, error) { return parse(src, false) }

// ParseNew is Parse for a policy about to be stored, validated or tested: a service role
// named as an approver role is an error.
func ParseNew(src []byte) (*Policy, error) { return parse(src, true) }

func parse(src []byte, strict bool) (*Policy, error) {
	root, err := decodeDocument(src)
	if err != nil {
		return nil, err
	}
	if root == nil {
		return nil, &PolicyError{Line: 1, Field: "version", Msg: `is required (the policy is empty); want "v1"`}
	}
	p := parser{strict: strict}
	p.checkPlain(root)
	if len(p.errs) > 0 {
		return nil, p.sorted()
	}
	pol := p.policy(root)
	if len(p.errs) > 0 {
		return nil, p.sorted()
	}
	pol.warnings = append(p.serviceRoles, slipPastWarnings(pol)...)
	slices.SortStableFunc(pol.warnings, func(a, b Warning) int { return cmp.Compare(a.Line, b.Line) })
	return pol, nil
}

// sorted returns the collected errors joined in line order.
func (p *parser) sorted() error {
	slices.SortStableFunc(p.errs, func(a, b error) int {
		var pa, pb *PolicyError
		errors.As(a, &pa)
		errors.As(b, &pb)
		return cmp.Compare(pa.Line, pb.Line)
	})
	return p.err()
}

func (p *parser) policy(root *yaml.Node) *Policy {
	entries, ok := p.mapping(root, "", topKeys...)
	if !ok {
		return nil
	}
	get := func(name string) *yaml.Node {
		for _, e := range entries {
			if e.name == name {
				return e.val
			}
		}
		return nil
	}
	pol := &Policy{def: Allow, labels: map[string]*labelSpec{}}

	if v := get("version"); v == nil {
		p.errorf(root, "version", `is required; want "v1"`)
	} else if s, ok := p.str(v, "version"); ok && s != Version {
		p.errorf(v, "version", "unsupported version %q; want %q", s, Version)
	}
	if v := get("default"); v != nil {
		if s, ok := p.str(v, "default"); ok {
			d, err := ParseDecision(s)
			if err != nil {
				p.errorf(v, "default", "%v", err)
			}
			pol.def = d
		}
	}
	hasSchema := false
	if v := get("labels"); v != nil && !isNull(v) {
		hasSchema = true
		p.labelSchema(v, pol)
	}
	var defaults approvalSpec
	if v := get("approval_defaults"); v != nil && !isNull(v) {
		defaults = p.approval(v, "approval_defaults")
	}
	pol.defaults = defaults.over(builtinApproval())
	if v := get("rules"); v != nil && !isNull(v) {
		p.rules(v, pol, hasSchema)
	}
	return pol
}

var labelKeys = []string{"type", "enum", "default", "required"}

func (p *parser) labelSchema(n *yaml.Node, pol *Policy) {
	entries, ok := p.mapping(n, "labels")
	if !ok {
		return
	}
	for _, e := range entries {
		field := join("labels", e.name)
		if msg := nameProblem(e.name); msg != "" {
			p.errorf(e.key, field, "%s", msg)
			continue
		}
		if e.name == "topic" {
			p.errorf(e.key, field, "topic is not a label; `when: {topic: ...}` always tests the job's topic")
			continue
		}
		// A spec with a known type is kept even if other parts are wrong,
		// so rules that use the label are still checked against its type.
		if spec := p.labelSpec(e.val, field); spec != nil {
			spec.name = e.name
			pol.labels[e.name] = spec
			pol.labelNames = append(pol.labelNames, e.name)
		}
	}
	slices.Sort(pol.labelNames)
}

// labelSpec parses a label's schema; it returns nil when the type is
// missing or unknown.
func (p *parser) labelSpec(n *yaml.Node, field string) *labelSpec {
	entries, ok := p.mapping(n, field, labelKeys...)
	if !ok {
		return nil
	}
	spec := &labelSpec{}
	var enumNode, defNode *yaml.Node
	var reqNode *yaml.Node
	typed := false
	for _, e := range entries {
		f := join(field, e.name)
		switch e.name {
		case "type":
			if s, ok := p.str(e.val, f); ok {
				if k, ok := parseKind(s); ok {
					spec.kind, typed = k, true
				} else {
					p.errorf(e.val, f, "unknown type %q (want string, bool or number)", s)
				}
			}
		case "enum":
			enumNode = e.val
		case "default":
			defNode = e.val
		case "required":
			reqNode = e.val
			spec.required, _ = p.boolean(e.val, f)
		}
	}
	if !typed {
		if !slices.ContainsFunc(entries, func(e entry) bool { return e.name == "type" }) {
			p.errorf(n, join(field, "type"), "is required (string, bool or number)")
		}
		return nil
	}
	if enumNode != nil {
		f := join(field, "enum")
		items, _ := p.list(enumNode, f)
		for i, item := range items {
			fi := index(f, i)
			s, ok := p.scalarValue(item, fi)
			switch {
			case !ok:
			case s.k != spec.kind:
				p.errorf(item, fi, "value %s is not a %s", s, spec.kind)
			case slices.ContainsFunc(spec.enum, s.equal):
				p.errorf(item, fi, "duplicate value %s", s)
			default:
				spec.enum = append(spec.enum, s)
			}
		}
	}
	if defNode != nil {
		f := join(field, "default")
		s, ok := p.scalarValue(defNode, f)
		switch {
		case !ok:
		case s.k != spec.kind:
			p.errorf(defNode, f, "value %s is not a %s", s, spec.kind)
		case !spec.allows(s):
			p.errorf(defNode, f, "value %s is not in enum", s)
		default:
			spec.def, spec.hasDefault = s, true
		}
		if spec.required {
			p.errorf(reqNode, join(field, "required"), "a label cannot be both required and have a default")
		}
	}
	return spec
}

// list reads a non-empty sequence of scalars.
func (p *parser) list(n *yaml.Node, field string) ([]*yaml.Node, bool) {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, field, "must be a list, not %s", describe(n))
		return nil, false
	}
	if len(n.Content) == 0 {
		p.errorf(n, field, "list must not be empty")
		return nil, false
	}
	return n.Content, true
}

// nameProblem checks a label or role name: 1 to 128 bytes of valid UTF-8
// with no whitespace or control characters.
func nameProblem(s string) string {
	if s == "" {
		return "name is empty"
	}
	if len(s) > 128 {
		return "name is longer than 128 bytes"
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == 0x7f {
				return fmt.Sprintf("name %q contains whitespace or a control character", s)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if msg := runeProblem(r, size); msg != "" {
			return fmt.Sprintf("name %q: %s", s, msg)
		}
		i += size
	}
	return ""
}

// ruleIDProblem checks a rule id: 1 to 128 characters of [A-Za-z0-9._:-].
func ruleIDProblem(id string) string {
	if id == "" {
		return "must not be empty"
	}
	if len(id) > 128 {
		return "must be at most 128 characters"
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '_' || c == ':' || c == '-'
		if !ok {
			return fmt.Sprintf("%q may only contain A-Z, a-z, 0-9, '.', '_', ':' and '-'", id)
		}
	}
	if id == DefaultRuleID {
		return fmt.Sprintf("%q is reserved for the policy default", id)
	}
	return ""
}
