// Package decision owns Agate's policy language: it parses and validates a
// policy (YAML, version v1), compiles it into an index, and evaluates jobs
// against it.
//
// The package is pure: it reads no clock, does no I/O and imports no
// transport or storage code, so every decision is a function of the policy
// and the job alone. Evaluate is built for the hot path: its cost does not
// grow with rules on other topics, and it allocates at most once per call.
//
// A policy looks like this:
//
//	version: v1
//	default: allow            # decision when no rule matches; absent means allow
//	labels:                   # optional schema for job labels
//	  env: {type: string, enum: [production, staging, dev], required: true}
//	  scope_validated: {type: bool, default: false}
//	approval_defaults: {roles: [admin], quorum: 1, ttl: 24h}
//	rules:
//	  - id: require-approval-prod-finance
//	    when: {topic: finance.payment.execute, env: production}
//	    decision: require_human
//	    reason: production payments need a human
//	    approval: {roles: [admin, finance-approver], quorum: 1, ttl: 24h}
//
// Matching rules combine as deny > require_human > allow; the deciding rule
// is the first rule, in policy order, at the winning level.
package decision
