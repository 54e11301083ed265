package decision

import "fmt"

// slipPastWarnings finds deny and require_human rules that test a label a
// job may simply omit: without `required` or a `default`, a missing label
// never matches, so the job slips past the rule.
func slipPastWarnings(pol *Policy) []Warning {
	var out []Warning
	for _, r := range pol.rules {
		if r.decision != Deny && r.decision != RequireHuman {
			continue
		}
		for _, c := range r.conds {
			if spec := pol.labels[c.label]; spec != nil && (spec.required || spec.hasDefault) {
				continue
			}
			out = append(out, Warning{
				Line:   c.line,
				RuleID: r.id,
				Label:  c.label,
				Msg: fmt.Sprintf("%s rule %q tests label %q, which is neither required nor has a default: "+
					"a job that omits %q slips past the rule (declare it in labels with required: true or a default)",
					r.decision, r.id, c.label, c.label),
			})
		}
	}
	return out
}
