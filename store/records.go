package store

import "github.com/agate-pdp/agate/evidence"

// Status is a job's lifecycle state, stored and reported as these lower-case strings.
type Status string

// The job statuses (see the README's state machine).
const (
	StatusAllowed              Status = "allowed"
	StatusDenied               Status = "denied"
	StatusPendingApproval      Status = "pending_approval"
	StatusApproved             Status = "approved"
	StatusRejected             Status = "rejected"
	StatusExpired              Status = "expired"
	StatusCancelled            Status = "cancelled"
	StatusConflict             Status = "conflict"
	StatusAllowedAndPublished  Status = "allowed_and_published"
	StatusApprovedAndPublished Status = "approved_and_published"
	StatusSucceeded            Status = "succeeded"
	StatusFailed               Status = "failed"
)

// Job is a job's current state. Times are microseconds since the Unix epoch; 0 = unset.
type Job struct {
	ID          string
	Topic       string
	Actor       string
	Labels      []byte // canonical JSON object
	Payload     []byte // the JSON object as submitted
	Hash        string // job_hash
	SubmittedBy string
	TraceID     string

	Status           Status
	Decision         string // allow | deny | require_human
	ApprovalRequired bool
	RuleID           string
	Reason           string
	MatchedRules     []string
	Snapshot         string   // policy_snapshot that decided it
	ApprovalRoles    []string // roles that may approve (require_human only)
	Quorum           int      // distinct approvals needed (require_human only)
	ExpiresAt        int64    // approval deadline: approve and publish before it
	Revision         int      // decision revision; a re-decision after a conflict adds 1

	ApprovedBy   string // the approver who completed the quorum
	ApprovedRole string
	ApprovedAt   int64

	Attempt     int64  // publish attempt: 0 unpublished, 1 first publish, +1 per replay
	Outcome     string // "", succeeded, failed (of the current attempt)
	DecidedAt   int64
	PublishedAt int64
	UpdatedAt   int64
}

// Approval is one approver's approval of one decision revision of a job.
type Approval struct {
	JobID    string
	Revision int
	Approver string
	Role     string
	At       int64 // µs
	Reason   string
}

// JobQuery selects jobs. Empty fields do not filter.
type JobQuery struct {
	Statuses       []Status
	Topic          string // exact topic
	Actor          string
	RuleID         string
	Snapshot       string
	DecidedSince   int64 // DecidedAt >= DecidedSince when > 0
	DecidedBefore  int64 // DecidedAt < DecidedBefore when > 0
	UpdatedBefore  int64 // UpdatedAt < UpdatedBefore when > 0
	AfterDecidedAt int64 // cursor
	AfterID        string
	Limit          int
}

// EventQuery selects evidence events. Empty fields do not filter.
type EventQuery struct {
	Since, Until int64 // At >= Since, At < Until (when > 0)
	Kind         string
	Decision     string
	Status       string
	RuleID       string
	Snapshot     string
	ApprovedBy   string
	Conflict     string
	JobID        string
	Topic        string // events of jobs with this topic
	AfterAt      int64  // cursor
	AfterEventID string
	Limit        int
}

// ChainQuery selects whole evidence chains, in pages.
type ChainQuery struct {
	JobIDs     []string // only these chains; empty: every chain
	AfterJobID string   // cursor: (JobID, Seq) strictly after (AfterJobID, AfterSeq)
	AfterSeq   int64
	Limit      int
}

// Checkpoint is a stored signed checkpoint and its position in the checkpoint chain.
type Checkpoint struct {
	Seq int64 // from 1; each checkpoint links to the one at Seq - 1
	evidence.Checkpoint
}

// NotificationState is where a notification is in its delivery.
type NotificationState string

// The notification states.
const (
	// NotificationPending: not yet delivered to every destination it matches; a
	// deliverer claims it when NextAt has come.
	NotificationPending NotificationState = "pending"
	// NotificationDelivered: every matching destination accepted it.
	NotificationDelivered NotificationState = "delivered"
	// NotificationDead: it failed MaxAttempts times and waits for an operator.
	NotificationDead NotificationState = "dead"
)

// Notification is one row of the transactional outbox: a transition someone waits for,
// written in the transition's own transaction, and its delivery state. What it tells is
// read at delivery from the evidence event EventID and the job JobID, which never change,
// so every attempt sends the same body. Times are µs since the Unix epoch; 0 = unset.
type Notification struct {
	ID        string // the webhook-id: the same on every attempt and for every destination
	JobID     string
	EventID   string // the transition's evidence event
	Kind      string // pending_approval, approved, rejected, expired, cancelled, conflict, published
	CreatedAt int64

	State       NotificationState
	Attempts    int      // failed attempts so far
	NextAt      int64    // due: not claimed before
	ClaimedBy   string   // the deliverer holding the lease; "" for none
	ClaimUntil  int64    // the lease ends
	DeliveredTo []string // destinations that accepted it, skipped on a retry
	LastError   string
	DoneAt      int64 // when it became delivered or dead
}

// NotificationQuery selects notifications, ordered by (DoneAt, ID), strictly after the
// cursor (AfterDoneAt, AfterID). Empty fields do not filter.
type NotificationQuery struct {
	State       NotificationState
	JobID       string
	AfterDoneAt int64
	AfterID     string
	Limit       int
}
