package decision

import "slices"

// The service roles belong to Agate's own callers: the services that submit and
// dispatch jobs, auditors, policy owners and operators. None of them may approve: a
// policy naming one as an approver role would let one principal both approve a job and,
// say, publish it.
const (
	RoleDecide      = "decide"       // Decide, Evaluate; reads and cancels its own jobs
	RoleDispatch    = "dispatch"     // Publish, ReportOutcome, ListReplayable, Replay
	RoleAudit       = "audit"        // the evidence RPCs; reads every job
	RolePolicyAdmin = "policy-admin" // PutPolicy, ActivateSnapshot, ValidatePolicy
	RoleOperator    = "operator"     // cancels and reads any job
)

var serviceRoles = []string{RoleDecide, RoleDispatch, RoleAudit, RolePolicyAdmin, RoleOperator}

// ServiceRoles lists the service roles.
func ServiceRoles() []string { return slices.Clone(serviceRoles) }

// IsServiceRole reports whether r is a service role, which no policy may name as an
// approver role.
func IsServiceRole(r string) bool { return slices.Contains(serviceRoles, r) }
