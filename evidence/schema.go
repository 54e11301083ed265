package evidence

// common are the fields every event must carry.
var common = []string{"event_id", "job_id", "kind", "at", "principal"}

// jobCommon are the fields every event about a job must carry.
var jobCommon = []string{"trace_id", "actor", "policy_snapshot", "job_hash", "status"}

// required lists, per kind, the fields that must be non-empty beyond common. An allowed
// job's decision has no approver; a policy activation has no job: each kind names only
// what it really has, and nothing is optional within a kind.
var required = map[Kind][]string{
	KindDecision:         concat(jobCommon, "decision", "rule_id", "reason"),
	KindApproval:         concat(jobCommon, "decision", "approved_by", "approved_role", "approved_at"),
	KindRejection:        concat(jobCommon, "decision", "reason"),
	KindPublish:          concat(jobCommon, "decision", "attempt"),
	KindReplay:           concat(jobCommon, "decision", "attempt", "replay_reason_code", "reason"),
	KindOutcome:          concat(jobCommon, "attempt"),
	KindConflict:         concat(jobCommon, "conflict"),
	KindExpiry:           concat(jobCommon, "decision"),
	KindCancel:           concat(jobCommon, "reason"),
	KindRefusal:          concat(jobCommon, "conflict", "reason"),
	KindPolicyActivation: {"policy_snapshot", "reason"},
}

func concat(base []string, more ...string) []string {
	out := make([]string, 0, len(base)+len(more))
	return append(append(out, base...), more...)
}

// Required returns the fields an event of kind k must carry, common ones included.
// It returns nil for an unknown kind.
func Required(k Kind) []string {
	r, ok := required[k]
	if !ok {
		return nil
	}
	return concat(common, r...)
}

// principalRefusal are the fields a refusal on a principal's chain must carry beyond
// common: it records an attempt on a job the caller had no standing on (or that does not
// exist), so it has no job fields; its reason names the call and the job id.
var principalRefusal = []string{"conflict", "reason"}

// RequiredFor returns the fields e must carry: Required(e.Kind), except for a refusal on
// a principal's chain (see PrincipalChainPrefix).
func RequiredFor(e *Event) []string {
	if e.Kind == KindRefusal && IsPrincipalChain(e.JobID) {
		return concat(common, principalRefusal...)
	}
	return Required(e.Kind)
}

// Validate reports the required fields e lacks as a *MissingFieldsError, or nil.
func Validate(e *Event) error {
	req := RequiredFor(e)
	if req == nil {
		return &MissingFieldsError{Kind: e.Kind, Fields: []string{"kind"}}
	}
	var missing []string
	for _, f := range req {
		if isZero(e, f) {
			missing = append(missing, f)
		}
	}
	if e.Seq < 1 {
		missing = append(missing, "seq")
	}
	if len(missing) > 0 {
		return &MissingFieldsError{Kind: e.Kind, Fields: missing}
	}
	return nil
}

// isZero reports whether the named field of e is empty.
func isZero(e *Event, field string) bool {
	switch field {
	case "event_id":
		return e.EventID == ""
	case "job_id":
		return e.JobID == ""
	case "trace_id":
		return e.TraceID == ""
	case "kind":
		return e.Kind == ""
	case "at":
		return e.At <= 0
	case "actor":
		return e.Actor == ""
	case "principal":
		return e.Principal == ""
	case "decision":
		return e.Decision == ""
	case "rule_id":
		return e.RuleID == ""
	case "reason":
		return e.Reason == ""
	case "policy_snapshot":
		return e.PolicySnapshot == ""
	case "job_hash":
		return e.JobHash == ""
	case "approved_by":
		return e.ApprovedBy == ""
	case "approved_role":
		return e.ApprovedRole == ""
	case "approved_at":
		return e.ApprovedAt <= 0
	case "status":
		return e.Status == ""
	case "attempt":
		return e.Attempt <= 0
	case "conflict":
		return e.Conflict == ""
	case "replay_reason_code":
		return e.ReplayReasonCode == ""
	}
	return true // an unknown field name in the schema is a bug; fail closed
}
