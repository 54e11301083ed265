package decision

import "slices"

// Policy is a parsed and validated policy. It is immutable; Compile turns it
// into an Engine.
type Policy struct {
	def        Decision
	defaults   Approval // approval_defaults merged over the built-in default
	labels     map[string]*labelSpec
	labelNames []string // sorted, so validation reports deterministically
	rules      []rule
	warnings   []Warning
}

// LabelSpec is a label's declared schema. Enum and Default hold string, bool
// or float64 values.
type LabelSpec struct {
	Type       string // "string", "bool" or "number"
	Enum       []any
	Default    any
	HasDefault bool
	Required   bool
}

// labelSpec is the internal, typed form of LabelSpec.
type labelSpec struct {
	name       string
	kind       kind
	enum       []scalar
	def        scalar
	hasDefault bool
	required   bool
}

// allows reports whether s fits the spec's type and enum.
func (l *labelSpec) allows(s scalar) bool {
	if s.k != l.kind {
		return false
	}
	if len(l.enum) == 0 {
		return true
	}
	for _, e := range l.enum {
		if e.equal(s) {
			return true
		}
	}
	return false
}

// rule is one parsed rule.
type rule struct {
	id       string
	line     int
	decision Decision
	reason   string         // the rule's reason, or the generated one
	topics   []topicPattern // any-of; nil means every topic
	conds    []cond
	approval Approval // resolved; meaningful for require_human only
}

// cond is one label test of a rule's `when`: the job's label must equal one
// of vals.
type cond struct {
	label string
	line  int
	vals  []scalar
}

// Warnings lists rules that a job can slip past by omitting a label: deny
// and require_human rules that test a label which is neither required nor
// has a default.
func (p *Policy) Warnings() []Warning { return slices.Clone(p.warnings) }

// RuleCount returns the number of rules.
func (p *Policy) RuleCount() int { return len(p.rules) }

// Default returns the decision for a job that no rule matches.
func (p *Policy) Default() Decision {
	if p.def == 0 {
		return Allow
	}
	return p.def
}

// Labels returns the declared label schema (empty without one).
func (p *Policy) Labels() map[string]LabelSpec {
	out := make(map[string]LabelSpec, len(p.labels))
	for name, l := range p.labels {
		spec := LabelSpec{Type: l.kind.String(), HasDefault: l.hasDefault, Required: l.required}
		for _, e := range l.enum {
			spec.Enum = append(spec.Enum, e.value())
		}
		if l.hasDefault {
			spec.Default = l.def.value()
		}
		out[name] = spec
	}
	return out
}
