package evidence

// Summary is a job's evidence summary record: the compliance guide's reference event,
// field for field, plus the job's topic, actor and publish attempt.
type Summary struct {
	JobID            string
	TraceID          string
	Decision         string // allow | deny | require_human
	ApprovalRequired bool
	PolicySnapshot   string
	JobHash          string
	ApprovedBy       string
	ApprovedRole     string
	ApprovedAt       int64 // µs since epoch
	Status           string
	Topic            string
	Actor            string
	Attempt          int64
}

// approvedStatuses are the statuses an approval-gated job reaches only through an
// approval, so from them on the approver must be on record.
var approvedStatuses = map[string]bool{
	"approved":               true,
	"approved_and_published": true,
	"succeeded":              true,
	"failed":                 true,
}

// CheckSummary returns the names of the fields s lacks, or nil. Every summary needs
// job_id, trace_id, decision, policy_snapshot, job_hash and status; an approval-gated
// job that was approved also needs approved_by, approved_role and approved_at, which
// completes the guide's minimum evidence (decision, snapshot, hash, approver, role,
// approval timestamp, final publish status).
func CheckSummary(s Summary) []string {
	var missing []string
	need := func(name string, empty bool) {
		if empty {
			missing = append(missing, name)
		}
	}
	need("job_id", s.JobID == "")
	need("trace_id", s.TraceID == "")
	need("decision", s.Decision == "")
	need("policy_snapshot", s.PolicySnapshot == "")
	need("job_hash", s.JobHash == "")
	need("status", s.Status == "")
	if s.ApprovalRequired && approvedStatuses[s.Status] {
		need("approved_by", s.ApprovedBy == "")
		need("approved_role", s.ApprovedRole == "")
		need("approved_at", s.ApprovedAt <= 0)
	}
	return missing
}
