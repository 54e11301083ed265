package jobs

import (
	"time"

	"github.com/agate-pdp/agate/store"
)

// Status is a job's lifecycle state, reported as its lower-case name.
type Status = store.Status

// The job statuses (see the README's state machine).
const (
	StatusAllowed              = store.StatusAllowed
	StatusDenied               = store.StatusDenied
	StatusPendingApproval      = store.StatusPendingApproval
	StatusApproved             = store.StatusApproved
	StatusRejected             = store.StatusRejected
	StatusExpired              = store.StatusExpired
	StatusCancelled            = store.StatusCancelled
	StatusConflict             = store.StatusConflict
	StatusAllowedAndPublished  = store.StatusAllowedAndPublished
	StatusApprovedAndPublished = store.StatusApprovedAndPublished
	StatusSucceeded            = store.StatusSucceeded
	StatusFailed               = store.StatusFailed
)

// View is a job as the lifecycle shows it to callers, whatever the storage holds: what
// the transport converts. Times are microseconds since the Unix epoch; 0 is unset.
type View struct {
	ID          string
	Topic       string
	Actor       string
	Labels      map[string]any // string, bool or float64 values
	Payload     []byte         // the JSON object exactly as submitted and hashed
	TraceID     string
	Hash        string
	SubmittedBy string

	Status       Status
	Decision     string // allow, deny or require_human
	RuleID       string
	Reason       string
	MatchedRules []string
	Snapshot     string
	Required     *ApprovalRequirement // nil unless the decision is require_human
	Revision     int

	ApprovedBy   string // who completed the quorum
	ApprovedRole string
	ApprovedAt   int64
	Approvals    []Approval // of the current revision, oldest first

	Attempt     int64
	Outcome     string // "", succeeded or failed
	ExpiresAt   int64
	DecidedAt   int64
	PublishedAt int64
	UpdatedAt   int64
	Conflict    string // the latest conflict reason while the job is in conflict (GetJob only)
}

// ApprovalRequirement is what approval a job needs.
type ApprovalRequirement struct {
	Roles  []string
	Quorum int
	TTL    time.Duration // from the decision
}

// Approval is one approver's approval.
type Approval struct {
	By     string
	Role   string
	At     int64
	Reason string
}

// newView builds the view of a stored job and its approvals.
func newView(j *store.Job, as []store.Approval) View {
	labels, err := decodeLabels(j.Labels)
	if err != nil {
		labels = nil // stored by the lifecycle as canonical JSON; unreadable only if corrupted
	}
	v := View{
		ID: j.ID, Topic: j.Topic, Actor: j.Actor, Labels: labels, Payload: j.Payload,
		TraceID: j.TraceID, Hash: j.Hash, SubmittedBy: j.SubmittedBy,
		Status: j.Status, Decision: j.Decision, RuleID: j.RuleID, Reason: j.Reason,
		MatchedRules: j.MatchedRules, Snapshot: j.Snapshot, Revision: j.Revision,
		ApprovedBy: j.ApprovedBy, ApprovedRole: j.ApprovedRole, ApprovedAt: j.ApprovedAt,
		Attempt: j.Attempt, Outcome: j.Outcome, ExpiresAt: j.ExpiresAt, DecidedAt: j.DecidedAt,
		PublishedAt: j.PublishedAt, UpdatedAt: j.UpdatedAt,
	}
	if len(j.ApprovalRoles) > 0 {
		v.Required = &ApprovalRequirement{Roles: j.ApprovalRoles, Quorum: j.Quorum,
			TTL: time.Duration(j.ExpiresAt-j.DecidedAt) * time.Microsecond}
	}
	for _, a := range as {
		v.Approvals = append(v.Approvals, approvalView(a))
	}
	return v
}

func approvalView(a store.Approval) Approval {
	return Approval{By: a.Approver, Role: a.Role, At: a.At, Reason: a.Reason}
}

// View is the job as Decide left it.
func (r DecideResult) View() View { return newView(&r.Job, nil) }

// View is the job as Approve left it, with its approvals.
func (r ApproveResult) View() View { return newView(&r.Job, r.Approvals) }

// Mine is the caller's approval; zero when the caller never approved.
func (r ApproveResult) Mine() Approval {
	if r.Approval.Approver == "" {
		return Approval{}
	}
	return approvalView(r.Approval)
}

// View is the job as Reject left it.
func (r RejectResult) View() View { return newView(&r.Job, nil) }

// View is the job as Publish handed it out, with its approvals.
func (r PublishResult) View() View { return newView(&r.Job, r.Approvals) }

// View is the job as Replay handed it out, with its approvals.
func (r ReplayResult) View() View { return newView(&r.Job, r.Approvals) }

// View is the job as ReportOutcome left it.
func (r OutcomeResult) View() View { return newView(&r.Job, nil) }

// View is the job as Cancel left it.
func (r CancelResult) View() View { return newView(&r.Job, nil) }

// View is the job with its approvals.
func (v JobView) View() View {
	out := newView(&v.Job, v.Approvals)
	out.Conflict = v.Conflict
	return out
}
