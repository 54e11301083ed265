# decision/testdata/reference.yaml in Rego (used with combine.rego).
package agate

matched contains [0, "require-approval-prod-finance", "require_human"] if {
	input.topic == "finance.payment.execute"
	input.labels.env == "production"
}

matched contains [1, "deny-unscoped-external-export", "deny"] if {
	input.topic == "customer.data.export"
	input.labels.destination == "external"
	input.labels.scope_validated == false
}
