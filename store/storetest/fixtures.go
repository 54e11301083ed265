package storetest

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
)

// base is an arbitrary fixed time in µs (2026-04-01).
const base int64 = 1775001600000000

func snapshot(n int, createdAt int64) snapshots.Snapshot {
	src := fmt.Sprintf("version: v1\n# %d\n", n)
	sha, id := snapshots.Digest([]byte(src))
	return snapshots.Snapshot{
		ID: id, SHA256: sha, Source: []byte(src), RuleCount: n,
		CreatedAt: time.UnixMicro(createdAt).UTC(), CreatedBy: fmt.Sprintf("owner-%d@example.com", n),
	}
}

func sameSnapshot(t *testing.T, got, want snapshots.Snapshot) {
	t.Helper()
	if !got.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("snapshot %s: CreatedAt %v, want %v", want.ID, got.CreatedAt, want.CreatedAt)
	}
	got.CreatedAt, want.CreatedAt = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("snapshot round trip:\n got %+v\nwant %+v", got, want)
	}
}

// fullJob returns a job with every field set.
func fullJob(id string, decidedAt int64) store.Job {
	return store.Job{
		ID: id, Topic: "finance.payment.execute", Actor: "agent-7",
		Labels:  []byte(`{"env":"production","scope_validated":true}`),
		Payload: []byte(`{"amount":12.5,"currency":"EUR","note":"ünïcode"}`),
		Hash:    "sha256:" + id, SubmittedBy: "svc-orders", TraceID: "trc_" + id,
		Status: store.StatusPendingApproval, Decision: "require_human", ApprovalRequired: true,
		RuleID: "require-approval-prod-finance", Reason: "production payments need a human",
		MatchedRules: []string{"require-approval-prod-finance", "audit-all"},
		Snapshot:     "snap_0123456789abcdef", ApprovalRoles: []string{"admin", "finance-approver"},
		Quorum: 2, ExpiresAt: decidedAt + 86_400_000_000, Revision: 1,
		ApprovedBy: "alice@example.com", ApprovedRole: "admin", ApprovedAt: decidedAt + 1,
		Attempt: 3, Outcome: "succeeded", DecidedAt: decidedAt, PublishedAt: decidedAt + 2,
		UpdatedAt: decidedAt + 3,
	}
}

func sameJob(t *testing.T, got, want store.Job) {
	t.Helper()
	if !reflect.DeepEqual(normJob(got), normJob(want)) {
		t.Errorf("job round trip:\n got %+v\nwant %+v", got, want)
	}
}

// normJob makes empty lists and byte strings nil, which every backend reads them as.
func normJob(j store.Job) store.Job {
	j.Labels, j.Payload = nilIfEmpty(j.Labels), nilIfEmpty(j.Payload)
	j.MatchedRules, j.ApprovalRoles = nilIfEmpty(j.MatchedRules), nilIfEmpty(j.ApprovalRoles)
	return j
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

// fullEvent returns an unsealed event with every field set.
func fullEvent(jobID, eventID string, kind evidence.Kind, at int64) evidence.Event {
	return evidence.Event{
		EventID: eventID, JobID: jobID, TraceID: "trc_" + jobID, Kind: kind, At: at,
		Actor: "agent-7", Principal: "alice@example.com", Decision: "require_human",
		ApprovalRequired: true, RuleID: "require-approval-prod-finance", Reason: "looks right",
		MatchedRules:   []string{"require-approval-prod-finance", "audit-all"},
		PolicySnapshot: "snap_0123456789abcdef", PreviousSnapshot: "snap_fedcba9876543210",
		JobHash: "sha256:aa", PresentedHash: "sha256:bb", ApprovedBy: "alice@example.com",
		ApprovedRole: "admin", ApprovedAt: at, Status: "approved", Attempt: 2,
		Conflict: "SNAPSHOT_DRIFT", ReplayReasonCode: "WORKER_OUTAGE", Repeat: true,
		AuthMethod: "oidc:https://login.example.com",
	}
}

func sameEvents(t *testing.T, got, want []evidence.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d:\n got %v\nwant %v", len(got), len(want), eventIDs(got), eventIDs(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		g.MatchedRules, w.MatchedRules = nilIfEmpty(g.MatchedRules), nilIfEmpty(w.MatchedRules)
		if !reflect.DeepEqual(g, w) {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
}

func eventIDs(es []evidence.Event) []string {
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.EventID
	}
	return ids
}

func jobIDs(js []store.Job) []string {
	ids := make([]string, len(js))
	for i, j := range js {
		ids[i] = j.ID
	}
	return ids
}
