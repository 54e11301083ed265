// Package jobs owns the job lifecycle: Decide, Approve, Reject, Publish, ReportOutcome,
// Replay and Cancel as serializable transactions over the store, each writing its
// evidence event in the same transaction as the change it records; the approval queue;
// and loading and activating policy snapshots.
//
// Every call on a job reads authorize → load → check → write: it first establishes the
// caller's standing on the job (standing.go). A caller without standing gets the answer
// a missing job gets and changes nothing; its attempt is evidence on its own chain
// (evidence.PrincipalChain). Checks that refuse a call after recording why return
// refuseAfterCommit, so the refusal's evidence commits; callers see results through
// View, never storage records.
//
// The package knows nothing of the transport. Callers pass the authenticated Principal;
// every failure a caller can act on is an *Error carrying a Code and a Reason, which the
// server maps to gRPC status codes in one place. Any other error is internal.
//
// Decide reads the active snapshot from the replica's Tracker, never from the database,
// so the hot path costs one write transaction, and with group commit (Config.Batch)
// concurrent Decides share it: each behaves as if it had the transaction to itself, and
// none is answered before it commits. Approve, Reject, Publish and Replay read
// the active-snapshot pointer inside their transaction, so a lagging replica can delay a
// decision's snapshot but never let a drifted approval through.
package jobs
