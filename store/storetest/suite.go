package storetest

import (
	"context"
	"testing"

	"github.com/agate-pdp/agate/store"
)

// Run runs the conformance suite: one parallel subtest per contract, each on a fresh
// store from open.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"SnapshotPutGet", testSnapshotPutGet},
		{"SnapshotList", testSnapshotList},
		{"SnapshotActive", testSnapshotActive},
		{"JobInsertGet", testJobInsertGet},
		{"JobUpdate", testJobUpdate},
		{"JobListCount", testJobListCount},
		{"JobInsertMany", testJobInsertMany},
		{"JobsDue", testJobsDue},
		{"JobsGetMany", testJobsGetMany},
		{"JobsUpdateMany", testJobsUpdateMany},
		{"JobsLockOrder", testJobsLockOrder},
		{"ApprovalsInsertMany", testApprovalsInsertMany},
		{"EventsAppendMany", testEventsAppendMany},
		{"Approvals", testApprovals},
		{"EventsChain", testEventsChain},
		{"EventsQuery", testEventsQuery},
		{"LockedReads", testLockedReads},
		{"EvidenceSchema", testEvidenceSchema},
		{"EventsByTopic", testEventsByTopic},
		{"ChainEvents", testChainEvents},
		{"Checkpoints", testCheckpoints},
		{"CheckpointRace", testCheckpointRace},
		{"RollbackOnError", testRollbackOnError},
		{"RollbackOnPanic", testRollbackOnPanic},
		{"CanceledContext", testCanceledContext},
		{"ReadIsReadOnly", testReadIsReadOnly},
		{"ReadIsConsistent", testReadIsConsistent},
		{"ConcurrentIncrements", testConcurrentIncrements},
		{"WriteSkew", testWriteSkew},
		{"NotificationsInsert", testNotificationsInsert},
		{"NotificationsClaim", testNotificationsClaim},
		{"NotificationsClaimRace", testNotificationsClaimRace},
		{"NotificationsPrune", testNotificationsPrune},
		{"NotificationsRequeue", testNotificationsRequeue},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			if err := s.Ping(t.Context()); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			tc.fn(t, s)
		})
	}
}

// write runs fn in a ReadWrite transaction that must succeed.
func write(t *testing.T, s store.Store, fn func(ctx context.Context, tx store.Tx) error) {
	t.Helper()
	if err := s.ReadWrite(t.Context(), fn); err != nil {
		t.Fatalf("ReadWrite: %v", err)
	}
}

// read runs fn in a Read transaction that must succeed.
func read(t *testing.T, s store.Store, fn func(ctx context.Context, tx store.Tx) error) {
	t.Helper()
	if err := s.Read(t.Context(), fn); err != nil {
		t.Fatalf("Read: %v", err)
	}
}

// getJob reads a job that must exist.
func getJob(t *testing.T, s store.Store, id string) (j store.Job) {
	t.Helper()
	read(t, s, func(ctx context.Context, tx store.Tx) (err error) {
		j, err = tx.GetJob(ctx, id, false)
		return err
	})
	return j
}
