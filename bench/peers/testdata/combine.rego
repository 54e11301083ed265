# How an Agate policy turns matched rules into a result, in Rego. Every policy
# module of this package defines `matched`, a set of [position, rule id,
# decision] for the rules that match input, and may define `label_errors`, the
# labels that break its schema.
#
# As in Agate: a schema error wins; otherwise deny beats require_human beats
# allow, and the first matching rule in policy order at the winning level
# decides; no match falls to the default (allow in every policy here).
package agate

strength := {"allow": 1, "require_human": 2, "deny": 3}

result := {"error": sort(data.agate.label_errors)} if {
	count(data.agate.label_errors) > 0
} else := {"decision": m[2], "rule_id": m[1], "matched": [r[1] | some r in sort(matched)]} if {
	top := max({strength[r[2]] | some r in matched})
	first := min({r[0] | some r in matched; strength[r[2]] == top})
	some m in matched
	m[0] == first
} else := {"decision": "allow", "rule_id": "default", "matched": []}
