package store

import (
	"context"
	"errors"
	"time"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/snapshots"
)

// Errors every backend returns, so callers never inspect driver errors.
var (
	// ErrNotFound: the record does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: a record with the same key already exists.
	ErrConflict = errors.New("store: already exists")
	// ErrBusy: the transaction kept failing on contention until its retry budget ran out.
	// Nothing it did was committed; the caller may try again later.
	ErrBusy = errors.New("store: contention: retry budget exhausted")
	// ErrUnavailable: the database cannot be reached.
	ErrUnavailable = errors.New("store: database unavailable")
	// ErrClockSkew: this replica's clock strays too far from the database's, so it
	// writes nothing (see package clockguard).
	ErrClockSkew = errors.New("store: this replica's clock is out of bounds")
)

// ClockSample is one reading of the database's clock, taken by a statement the replica
// runs anyway (the active-snapshot read), with the local times around it.
type ClockSample struct {
	DB             time.Time // the database's clock, as the statement read it
	Sent, Received time.Time // local, with monotonic readings: the statement ran between
}

// ClockReader is implemented by stores whose active-snapshot read also reads the
// database's clock.
type ClockReader interface {
	// LastClockSample returns the latest reading, and false before the first.
	LastClockSample() (ClockSample, bool)
}

// Store is a database holding Agate's state.
type Store interface {
	// ReadWrite runs fn in one SERIALIZABLE transaction and commits it. On a
	// serialization failure or deadlock (at any statement or at COMMIT) the whole
	// transaction is rolled back and fn runs again in a fresh one, up to a bounded
	// number of attempts; then ReadWrite returns ErrBusy. fn must therefore have no
	// effects outside tx. An error returned by fn rolls back and is returned as is.
	ReadWrite(ctx context.Context, fn func(ctx context.Context, tx Tx) error) error
	// Read runs fn in a read-only transaction with a consistent view.
	Read(ctx context.Context, fn func(ctx context.Context, tx Tx) error) error
	// ActiveSnapshot returns the active snapshot, or snapshots.ErrNoActive.
	snapshots.Source
	// Ping reports whether the database answers; ErrUnavailable when it does not.
	Ping(ctx context.Context) error
	// Close releases connections.
	Close() error
}

// Tx is what a transaction can do; it is only valid inside the callback that received it.
type Tx interface {
	SnapshotTx
	JobTx
	ApprovalTx
	EvidenceTx
	CheckpointTx
	NotificationTx
}

// SnapshotTx stores policy snapshots and the active-snapshot pointer.
type SnapshotTx interface {
	// PutSnapshot stores s unless a snapshot with s.ID exists; created reports which.
	// Identical content has the same id, so storing it again is a no-op.
	PutSnapshot(ctx context.Context, s snapshots.Snapshot) (created bool, err error)
	// GetSnapshot returns the snapshot with that id, or ErrNotFound.
	GetSnapshot(ctx context.Context, id string) (snapshots.Snapshot, error)
	// ListSnapshots returns up to limit snapshots, newest first (created_at desc, id
	// desc), starting after the snapshot whose id is after ("" for the first page).
	ListSnapshots(ctx context.Context, after string, limit int) ([]snapshots.Snapshot, error)
	// ActiveSnapshotID returns the active snapshot's id, or snapshots.ErrNoActive.
	ActiveSnapshotID(ctx context.Context) (string, error)
	// SetActiveSnapshot points the active pointer at id, which must exist (else
	// ErrNotFound).
	SetActiveSnapshot(ctx context.Context, id string, at time.Time, by string) error
}

// JobTx stores jobs: one row per job_id holding its current state.
type JobTx interface {
	// GetJob returns the job, or ErrNotFound. With forUpdate the row is locked until
	// the transaction ends (SELECT … FOR UPDATE where the backend has row locks; the
	// embedded backend's transactions already exclude each other).
	GetJob(ctx context.Context, id string, forUpdate bool) (Job, error)
	// GetJobs returns the jobs of ids that exist, ordered by id, and omits the others.
	// With forUpdate it locks their rows in one statement, in that order, so that two
	// transactions locking overlapping sets queue rather than deadlock (beyond 500 ids,
	// one statement per 500 of ids as given: pass them sorted). Ids must be distinct. It
	// is GetJob for many jobs at the cost of one statement.
	GetJobs(ctx context.Context, ids []string, forUpdate bool) ([]Job, error)
	// InsertJob stores a new job; ErrConflict when the id exists.
	InsertJob(ctx context.Context, j Job) error
	// InsertJobs stores each job of js whose id does not exist yet and reports which it
	// stored (inserted[i] for js[i]); the others change nothing. Ids must be distinct.
	// It is InsertJob for many jobs at the cost of one statement.
	InsertJobs(ctx context.Context, js []Job) (inserted []bool, err error)
	// UpdateJob overwrites the mutable state of an existing job (every field except
	// ID, Topic, Actor, Labels, Payload, Hash, SubmittedBy); ErrNotFound when absent.
	UpdateJob(ctx context.Context, j Job) error
	// UpdateJobs is UpdateJob for many jobs at the cost of one statement. Each job must
	// have been locked by this transaction (GetJob or GetJobs forUpdate), else
	// ErrNotFound and nothing is written; ids must be distinct.
	UpdateJobs(ctx context.Context, js []Job) error
	// ListJobs returns up to q.Limit jobs matching q, ordered by (DecidedAt, ID)
	// ascending, strictly after the cursor (q.AfterDecidedAt, q.AfterID).
	ListJobs(ctx context.Context, q JobQuery) ([]Job, error)
	// CountJobs counts jobs in any of statuses whose PolicySnapshot is not snapshot.
	CountJobs(ctx context.Context, statuses []Status, notSnapshot string) (int, error)
	// DueJobs returns the ids of up to limit jobs in status whose deadline has passed at
	// now (0 < ExpiresAt <= now), earliest deadline first (ExpiresAt, then ID). It locks
	// nothing: a caller acting on them locks each job (GetJob forUpdate) and checks its
	// status and deadline again, since another transaction may have changed it since.
	DueJobs(ctx context.Context, status Status, now int64, limit int) ([]string, error)
}

// ApprovalTx stores approvals: one row per (job, decision revision, approver).
type ApprovalTx interface {
	// InsertApproval stores a; ErrConflict when the approver already approved that
	// job revision (so a quorum counts distinct people).
	InsertApproval(ctx context.Context, a Approval) error
	// InsertApprovals stores every approval of as at the cost of one statement, or
	// returns ErrConflict (and the transaction must not commit) when any of them exists,
	// ErrNotFound when a job is missing.
	InsertApprovals(ctx context.Context, as []Approval) error
	// ListApprovals returns the approvals of a job revision, oldest first.
	ListApprovals(ctx context.Context, jobID string, revision int) ([]Approval, error)
	// ListApprovalsOf returns the approvals of every revision of the jobs of jobIDs, by
	// job id, then revision, then oldest first: ListApprovals for many jobs at the cost of
	// one statement.
	ListApprovalsOf(ctx context.Context, jobIDs []string) ([]Approval, error)
}

// EvidenceTx appends and reads evidence events. Events are never updated or deleted.
type EvidenceTx interface {
	// ChainHead returns the seq and hash of the last event in a chain, or (0, "", nil)
	// for an empty chain.
	ChainHead(ctx context.Context, jobID string) (seq int64, hash string, err error)
	// AppendEvent stores e; ErrConflict when (JobID, Seq) or EventID already exists,
	// which under SERIALIZABLE means a concurrent append won and the transaction retries.
	AppendEvent(ctx context.Context, e evidence.Event) error
	// AppendEvents stores every event of es, or returns ErrConflict (and the
	// transaction must not commit) when any of them exists.
	AppendEvents(ctx context.Context, es []evidence.Event) error
	// ListEvents returns a chain's events ordered by seq.
	ListEvents(ctx context.Context, jobID string) ([]evidence.Event, error)
	// QueryEvents returns up to q.Limit events matching q ordered by (At, EventID),
	// strictly after the cursor (q.AfterAt, q.AfterEventID).
	QueryEvents(ctx context.Context, q EventQuery) ([]evidence.Event, error)
	// ListChainEvents returns up to q.Limit events of the chains q names (every chain
	// when q.JobIDs is empty) ordered by (JobID, Seq), strictly after the cursor
	// (q.AfterJobID, q.AfterSeq), so whole chains can be read in pages. Job ids order by
	// the database's collation: page with the cursor, never by sorting ids elsewhere.
	ListChainEvents(ctx context.Context, q ChainQuery) ([]evidence.Event, error)
}

// CheckpointTx stores the signed checkpoints that seal the evidence chains (see
// evidence.Checkpoint): one row per checkpoint and one per chain head it sealed.
// Checkpoints are never updated or deleted.
type CheckpointTx interface {
	// UnsealedHeads returns the head (last event) of every chain that has an event at
	// or after since and whose head no stored checkpoint has sealed, one per chain.
	UnsealedHeads(ctx context.Context, since int64) ([]evidence.Head, error)
	// SealedSeqs returns, for each of jobIDs that some checkpoint sealed, the highest
	// seq sealed; chains never sealed are absent.
	SealedSeqs(ctx context.Context, jobIDs []string) (map[string]int64, error)
	// LastCheckpoint returns the checkpoint with the highest Seq, heads included, or
	// ErrNotFound when there is none.
	LastCheckpoint(ctx context.Context) (Checkpoint, error)
	// AppendCheckpoint stores c and its heads; ErrConflict when c.Seq or c.ID exists,
	// which under SERIALIZABLE means a concurrent sealer won that position.
	AppendCheckpoint(ctx context.Context, c Checkpoint) error
	// ListCheckpoints returns up to limit checkpoints with Seq > afterSeq in Seq order
	// (all of them when limit <= 0), each with its heads sorted by job id.
	ListCheckpoints(ctx context.Context, afterSeq int64, limit int) ([]Checkpoint, error)
}

// NotificationTx stores the transactional outbox of notifications and their delivery
// state. Rows are written by the transitions' own transactions, so a rolled-back
// transition leaves none, and changed by deliverers under leases.
type NotificationTx interface {
	// InsertNotifications stores each of ns as given (callers set State pending), at the
	// cost of one statement per batch; ErrConflict (and the transaction must not commit)
	// when any of their ids exists.
	InsertNotifications(ctx context.Context, ns []Notification) error
	// ClaimNotifications leases to owner, until until, up to limit pending notifications
	// that are due (NextAt <= now) and not leased (ClaimUntil <= now), oldest due first,
	// and returns them as claimed. Two transactions never both claim a row: under
	// SERIALIZABLE the later one fails, runs again, and sees the lease.
	ClaimNotifications(ctx context.Context, owner string, now, until int64, limit int) ([]Notification, error)
	// SettleNotification records the outcome of a delivery of a notification owner
	// claimed (n's State, Attempts, NextAt, DeliveredTo, LastError and DoneAt) and frees
	// its lease. ErrConflict, changing nothing, when the row is no longer pending and
	// claimed by owner (its lease lapsed and another deliverer claimed it).
	SettleNotification(ctx context.Context, owner string, n Notification) error
	// ListNotifications returns up to q.Limit notifications matching q (see
	// NotificationQuery).
	ListNotifications(ctx context.Context, q NotificationQuery) ([]Notification, error)
	// RequeueNotifications makes dead-lettered notifications pending again, due at now,
	// with their attempts, lease, error and done time reset; the destinations that
	// received them stay recorded, so they are not sent there again. ids limits it to
	// those notifications (every dead one when ids is empty; ids that are not dead change
	// nothing). It returns how many it requeued.
	RequeueNotifications(ctx context.Context, ids []string, now int64) (int, error)
	// CountNotifications counts notifications by state; states with none are absent.
	CountNotifications(ctx context.Context) (map[NotificationState]int, error)
	// PruneNotifications deletes up to limit notifications that are delivered or dead
	// with DoneAt < before, or pending and created before before (no deliverer took them
	// within the retention), and returns how many it deleted.
	PruneNotifications(ctx context.Context, before int64, limit int) (int, error)
}
