package server

import (
	"fmt"
	"slices"
	"strings"

	"github.com/agate-pdp/agate/jobs"
)

// anyAuthenticated marks RPCs on one job (or the approval queue) that every
// authenticated principal may call, because who may act depends on the job: the
// lifecycle first establishes the caller's standing on it (eligible approver, actor or
// submitter, dispatcher, operator, auditor), and a caller without standing gets the
// answer a job that does not exist gets, its attempt recorded on its own evidence chain.
// Refusing some callers here instead would leave their attempts unrecorded.
const anyAuthenticated = "*"

// methodRoles says which roles may call each RPC (any one suffices). An RPC missing from
// this table is refused: new RPCs are closed until someone decides who may call them.
var methodRoles = map[string][]string{
	"/agate.v1.DecisionService/Decide":               {RoleDecide},
	"/agate.v1.DecisionService/Approve":              {anyAuthenticated},
	"/agate.v1.DecisionService/Reject":               {anyAuthenticated},
	"/agate.v1.DecisionService/Publish":              {anyAuthenticated},
	"/agate.v1.DecisionService/ReportOutcome":        {anyAuthenticated},
	"/agate.v1.DecisionService/ListReplayable":       {RoleDispatch},
	"/agate.v1.DecisionService/Replay":               {anyAuthenticated},
	"/agate.v1.DecisionService/Cancel":               {anyAuthenticated},
	"/agate.v1.DecisionService/GetJob":               {anyAuthenticated},
	"/agate.v1.DecisionService/ListPendingApprovals": {anyAuthenticated},
	"/agate.v1.DecisionService/WatchJobs":            {anyAuthenticated},
	"/agate.v1.PolicyService/PutPolicy":              {RolePolicyAdmin},
	"/agate.v1.PolicyService/ActivateSnapshot":       {RolePolicyAdmin},
	"/agate.v1.PolicyService/ValidatePolicy":         {RolePolicyAdmin},
	"/agate.v1.PolicyService/GetSnapshot":            {RoleAudit, RolePolicyAdmin},
	"/agate.v1.PolicyService/ListSnapshots":          {RoleAudit, RolePolicyAdmin},
	"/agate.v1.PolicyService/Evaluate":               {RoleDecide, RolePolicyAdmin},
}

// publicPrefixes need no credentials: load balancers probe health, and auditors and
// operators discover the API with reflection.
var publicPrefixes = []string{"/grpc.health.v1.Health/", "/grpc.reflection."}

func isPublic(method string) bool {
	for _, p := range publicPrefixes {
		if strings.HasPrefix(method, p) {
			return true
		}
	}
	return false
}

// allowed reports whether a caller holding roles may call method.
func allowed(method string, roles []string) bool {
	want, ok := methodRoles[method]
	if !ok && strings.HasPrefix(method, "/agate.v1.EvidenceService/") {
		want, ok = []string{RoleAudit}, true
	}
	if !ok {
		return false
	}
	for _, w := range want {
		if w == anyAuthenticated || slices.Contains(roles, w) {
			return true
		}
	}
	return false
}

// Authorize is the method-role check of the gRPC interceptors, for another transport
// that serves the same operation (the AuthZEN HTTP surface serves PolicyService
// Evaluate): p is refused, with the gRPC refusal's reason and message, unless one of
// its roles may call method.
func Authorize(method string, p jobs.Principal) error {
	if !allowed(method, p.Roles) {
		return roleNotAllowed(p, method)
	}
	return nil
}

func roleNotAllowed(p jobs.Principal, method string) error {
	return &accessError{reason: "ROLE_NOT_ALLOWED",
		msg: fmt.Sprintf("principal %q holds no role that may call %s", p.ID, method)}
}
