package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/agate-pdp/agate/store"
)

func testApprovals(t *testing.T, s store.Store) {
	job := fullJob("job_q", base)
	rev1 := []store.Approval{
		{JobID: job.ID, Revision: 1, Approver: "carol@example.com", Role: "admin", At: base + 1, Reason: "ok"},
		{JobID: job.ID, Revision: 1, Approver: "alice@example.com", Role: "finance-approver", At: base + 2, Reason: ""},
	}
	rev2 := store.Approval{JobID: job.ID, Revision: 2, Approver: "carol@example.com", Role: "admin", At: base + 3, Reason: "again"}
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		if err := tx.InsertJob(ctx, job); err != nil {
			return err
		}
		for _, a := range append(rev1, rev2) {
			if err := tx.InsertApproval(ctx, a); err != nil {
				return err
			}
		}
		return nil
	})
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		// The same person again, whatever the role or time: not a second approval.
		dup := rev1[0]
		dup.Role, dup.At = "finance-approver", base+9
		if err := tx.InsertApproval(ctx, dup); !errors.Is(err, store.ErrConflict) {
			t.Errorf("InsertApproval by the same approver: %v, want ErrConflict", err)
		}
		got, err := tx.ListApprovals(ctx, job.ID, 1)
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(got, rev1) {
			t.Errorf("ListApprovals(rev 1):\n got %+v\nwant %+v", got, rev1)
		}
		got, err = tx.ListApprovals(ctx, job.ID, 2)
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(got, []store.Approval{rev2}) {
			t.Errorf("ListApprovals(rev 2): %+v, want %+v", got, rev2)
		}
		got, err = tx.ListApprovals(ctx, job.ID, 3)
		if err != nil || len(got) != 0 {
			t.Errorf("ListApprovals(rev 3): %+v, %v; want none", got, err)
		}
		return nil
	})
	err := s.ReadWrite(t.Context(), func(ctx context.Context, tx store.Tx) error {
		return tx.InsertApproval(ctx, store.Approval{JobID: "job_missing", Revision: 1, Approver: "a", Role: "admin", At: base})
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("InsertApproval for a missing job: %v, want ErrNotFound", err)
	}
}
