# examples/policy.yaml in Rego (used with combine.rego): its label schema, with
# the defaults applied before any rule reads a label, and its two rules.
package agate

labels := object.union(
	{"destination": "external", "scope_validated": false},
	object.get(input, "labels", {}),
)

# `not x in set` is undefined, not true, when x is: each check is a rule of its own.
env_ok if labels.env in {"production", "staging", "dev"}

destination_ok if labels.destination in {"internal", "external"}

label_errors contains "env" if not env_ok

label_errors contains "destination" if not destination_ok

label_errors contains "scope_validated" if not is_boolean(labels.scope_validated)

matched contains [0, "require-approval-prod-finance", "require_human"] if {
	input.topic == "finance.payment.execute"
	labels.env == "production"
}

matched contains [1, "deny-unscoped-external-export", "deny"] if {
	input.topic == "customer.data.export"
	labels.destination == "external"
	labels.scope_validated == false
}
