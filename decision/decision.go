package decision

import (
	"fmt"
	"time"
)

// Decision is the outcome of evaluating a job.
type Decision uint8

// The decisions, from weakest to strongest: when several rules match, the
// strongest wins.
const (
	Allow Decision = iota + 1
	Deny
	RequireHuman
)

// String returns the policy-language name of d.
func (d Decision) String() string {
	switch d {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	case RequireHuman:
		return "require_human"
	}
	return fmt.Sprintf("Decision(%d)", uint8(d))
}

// ParseDecision parses a policy-language decision name.
func ParseDecision(s string) (Decision, error) {
	switch s {
	case "allow":
		return Allow, nil
	case "deny":
		return Deny, nil
	case "require_human":
		return RequireHuman, nil
	}
	return 0, fmt.Errorf("unknown decision %q (want allow, deny or require_human)", s)
}

// strength orders decisions for combining: deny > require_human > allow.
func (d Decision) strength() int {
	switch d {
	case Deny:
		return 3
	case RequireHuman:
		return 2
	case Allow:
		return 1
	}
	return 0
}

// Job is what a policy evaluates. Label values are string, bool or float64
// (as decoded from JSON); other Go integer and float types are accepted too
// and compare numerically, so 1 == 1.0.
type Job struct {
	Topic  string
	Actor  string
	Labels map[string]any
}

// Approval is what a require_human decision asks for: Quorum distinct
// approvers, each holding one of Roles, within TTL of the decision.
type Approval struct {
	Roles  []string
	Quorum int
	TTL    time.Duration
}

// Result is the outcome of Evaluate.
type Result struct {
	// Decision is the combined decision.
	Decision Decision
	// RuleID is the deciding rule's id, or "default" when no rule matched.
	RuleID string
	// Reason is the deciding rule's reason, or a generated one.
	Reason string
	// Matched lists the ids of every matched rule in policy order; nil when none.
	Matched []string
	// Approval is set iff Decision is RequireHuman.
	Approval Approval
}

// DefaultRuleID is the RuleID of a result decided by the policy default.
const DefaultRuleID = "default"

// builtinApproval is used for keys that neither a rule nor the policy's
// approval_defaults set.
func builtinApproval() Approval {
	return Approval{Roles: []string{"admin"}, Quorum: 1, TTL: 24 * time.Hour}
}
