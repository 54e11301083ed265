package server

import (
	"context"
	"log/slog"
	"slices"
)

// errorMetadata is, for every google.rpc.ErrorInfo reason, the metadata keys it
// carries: exactly the "Metadata:" line of its ErrorReason value in job.proto, which a
// test compares with this table.
var errorMetadata = map[string][]string{
	"UNSPECIFIED":         nil,
	"SNAPSHOT_DRIFT":      {"expected_snapshot", "active_snapshot"},
	"JOB_HASH_MISMATCH":   {"expected_job_hash", "presented_job_hash"},
	"LOCK_BUSY":           nil,
	"ALREADY_REJECTED":    nil,
	"ALREADY_APPROVED":    nil,
	"NOT_PENDING":         {"status"},
	"APPROVAL_EXPIRED":    {"expires_at"},
	"QUORUM_NOT_MET":      nil,
	"ROLE_NOT_ALLOWED":    nil,
	"SELF_APPROVAL":       nil,
	"INVALID_FIELD":       {"field"},
	"INVALID_POLICY":      {"field", "line", "policy_field"},
	"NOT_FOUND":           nil,
	"NO_ACTIVE_SNAPSHOT":  nil,
	"ATTEMPT_MISMATCH":    {"attempt"},
	"OUTCOME_MISMATCH":    {"attempt", "outcome"},
	"UNAUTHENTICATED":     nil,
	"STORE_UNAVAILABLE":   nil,
	"JOB_ID_IN_USE":       nil,
	"RATE_LIMITED":        nil,
	"STORED_JOB_TAMPERED": {"expected_job_hash", "computed_job_hash"},
	"CLOCK_SKEW":          nil,
}

// documented keeps the metadata keys the proto documents for reason and drops any
// other, so clients only ever see the documented contract. A dropped key or an unknown
// reason is a bug, logged so it is noticed.
func documented(ctx context.Context, log *slog.Logger, reason string, meta map[string]string) map[string]string {
	keys, ok := errorMetadata[reason]
	if !ok {
		log.ErrorContext(ctx, "error reason missing from job.proto's ErrorReason", "reason", reason)
	}
	for k := range meta {
		if !slices.Contains(keys, k) {
			log.ErrorContext(ctx, "error metadata key not documented in job.proto", "reason", reason, "key", k)
			delete(meta, k)
		}
	}
	return meta
}
