package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/agate-pdp/agate/store"
)

// Code classifies an *Error; the server maps each to one gRPC status code.
type Code int

// The codes, named after the gRPC codes they map to.
const (
	CodeInvalidArgument Code = iota + 1
	CodeNotFound
	CodePermissionDenied
	CodeAborted
	CodeFailedPrecondition
	CodeUnavailable
	CodeAlreadyExists
	CodeResourceExhausted
	CodeDataLoss
)

func (c Code) String() string {
	switch c {
	case CodeInvalidArgument:
		return "InvalidArgument"
	case CodeNotFound:
		return "NotFound"
	case CodePermissionDenied:
		return "PermissionDenied"
	case CodeAborted:
		return "Aborted"
	case CodeFailedPrecondition:
		return "FailedPrecondition"
	case CodeUnavailable:
		return "Unavailable"
	case CodeAlreadyExists:
		return "AlreadyExists"
	case CodeResourceExhausted:
		return "ResourceExhausted"
	case CodeDataLoss:
		return "DataLoss"
	}
	return fmt.Sprintf("Code(%d)", int(c))
}

// Reasons carried by *Error, sent to clients as the google.rpc.ErrorInfo reason.
const (
	// Aborted.
	ReasonSnapshotDrift   = "SNAPSHOT_DRIFT"
	ReasonJobHashMismatch = "JOB_HASH_MISMATCH"
	ReasonLockBusy        = "LOCK_BUSY" // the only retryable one
	// FailedPrecondition.
	ReasonAlreadyRejected  = "ALREADY_REJECTED"
	ReasonAlreadyApproved  = "ALREADY_APPROVED"
	ReasonNotPending       = "NOT_PENDING"
	ReasonApprovalExpired  = "APPROVAL_EXPIRED"
	ReasonQuorumNotMet     = "QUORUM_NOT_MET"
	ReasonNoActiveSnapshot = "NO_ACTIVE_SNAPSHOT"
	ReasonStaleAttempt     = "ATTEMPT_MISMATCH"
	ReasonOutcomeMismatch  = "OUTCOME_MISMATCH"
	// PermissionDenied.
	ReasonRoleNotAllowed = "ROLE_NOT_ALLOWED"
	ReasonSelfApproval   = "SELF_APPROVAL"
	// InvalidArgument; Field names the offending request field.
	ReasonInvalidField = "INVALID_FIELD"
	// InvalidArgument: a policy source that does not validate.
	ReasonInvalidPolicy = "INVALID_POLICY"
	// NotFound and Unavailable. NOT_FOUND is also the answer to a caller without
	// standing on the job: it must not learn that the job exists.
	ReasonNotFound    = "NOT_FOUND"
	ReasonUnavailable = "STORE_UNAVAILABLE"
	ReasonClockSkew   = "CLOCK_SKEW" // this replica's clock is out of bounds: it writes nothing
	// AlreadyExists: Decide of a job id another submitter has used.
	ReasonJobIDInUse = "JOB_ID_IN_USE"
	// ResourceExhausted: too many calls without standing from one principal.
	ReasonRateLimited = "RATE_LIMITED"
	// DataLoss: the stored job no longer hashes to its stored job_hash.
	ReasonStoredJobTampered = "STORED_JOB_TAMPERED"
)

// Error is a failure the caller can act on. Msg is safe to show to clients; internal
// detail never goes into it.
type Error struct {
	Code   Code
	Reason string
	Field  string            // the request field at fault (CodeInvalidArgument)
	Msg    string            //
	Meta   map[string]string // exactly the keys job.proto lists for Reason (a server test holds them equal)
}

func (e *Error) Error() string { return e.Msg }

// Retryable reports whether the same call may succeed when simply sent again.
func (e *Error) Retryable() bool {
	return e.Reason == ReasonLockBusy || e.Code == CodeUnavailable
}

// AsError returns err as an *Error when it is one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

func invalid(field, format string, args ...any) *Error {
	return &Error{Code: CodeInvalidArgument, Reason: ReasonInvalidField, Field: field,
		Msg: field + ": " + fmt.Sprintf(format, args...), Meta: map[string]string{"field": field}}
}

func failed(reason, msg string, meta ...string) *Error {
	return &Error{Code: CodeFailedPrecondition, Reason: reason, Msg: msg, Meta: metaOf(meta)}
}

func aborted(reason, msg string, meta ...string) *Error {
	return &Error{Code: CodeAborted, Reason: reason, Msg: msg, Meta: metaOf(meta)}
}

func denied(reason, msg string) *Error {
	return &Error{Code: CodePermissionDenied, Reason: reason, Msg: msg}
}

func notFound(what, id string) *Error {
	return &Error{Code: CodeNotFound, Reason: ReasonNotFound, Msg: what + " " + id + " not found"}
}

func notPending(status store.Status) *Error {
	return failed(ReasonNotPending, fmt.Sprintf("the job is %s", status), "status", string(status))
}

func lockBusy() *Error {
	return aborted(ReasonLockBusy, "the job is busy; retry with backoff")
}

func metaOf(kv []string) map[string]string {
	if len(kv) == 0 {
		return nil
	}
	m := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// mapStoreErr turns the store's error values into *Error; anything else passes through
// (an internal error, or the caller's context ending).
func mapStoreErr(err error, what, id string) error {
	if err == nil {
		return nil
	}
	if _, ok := AsError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, store.ErrNotFound):
		return notFound(what, id)
	case errors.Is(err, store.ErrBusy):
		return lockBusy()
	case errors.Is(err, store.ErrClockSkew):
		return &Error{Code: CodeUnavailable, Reason: ReasonClockSkew, Msg: err.Error() + "; retry on another replica"}
	case errors.Is(err, store.ErrUnavailable):
		return &Error{Code: CodeUnavailable, Reason: ReasonUnavailable, Msg: "the database is unavailable; retry later"}
	}
	return err
}
