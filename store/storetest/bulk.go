package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// bulkN crosses the backends' 500-row statement limit twice.
const bulkN = 1_100

func testJobInsertMany(t *testing.T, s store.Store) {
	old := fullJob("bulk_0700", base)
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.InsertJob(ctx, old) })

	js := make([]store.Job, bulkN)
	for i := range js {
		js[i] = fullJob(fmt.Sprintf("bulk_%04d", i), base+int64(i))
		js[i].Topic = "bulk.topic"
	}
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		inserted, err := tx.InsertJobs(ctx, js)
		if err != nil {
			return err
		}
		if len(inserted) != len(js) {
			t.Fatalf("InsertJobs reported %d jobs, want %d", len(inserted), len(js))
		}
		for i, ok := range inserted {
			if want := js[i].ID != old.ID; ok != want {
				t.Errorf("InsertJobs: job %s inserted=%v, want %v", js[i].ID, ok, want)
			}
		}
		if got, err := tx.InsertJobs(ctx, nil); err != nil || len(got) != 0 {
			t.Errorf("InsertJobs(nil) = %v, %v; want nothing", got, err)
		}
		dup := []store.Job{fullJob("bulk_dup", base), fullJob("bulk_dup", base)}
		if _, err := tx.InsertJobs(ctx, dup); err == nil {
			t.Error("InsertJobs with one id twice: no error")
		}
		return nil
	})
	sameJob(t, getJob(t, s, old.ID), old) // the existing job is untouched
	for _, i := range []int{0, 499, 500, 999, 1000, bulkN - 1} {
		sameJob(t, getJob(t, s, js[i].ID), js[i])
	}
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		got, err := tx.ListJobs(ctx, store.JobQuery{Topic: "bulk.topic"})
		if err != nil {
			return err
		}
		if len(got) != bulkN-1 {
			t.Errorf("ListJobs after InsertJobs: %d jobs, want %d", len(got), bulkN-1)
		}
		if _, err := tx.GetJob(ctx, "bulk_dup", false); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a refused InsertJobs stored bulk_dup: %v", err)
		}
		return nil
	})
}

func testEventsAppendMany(t *testing.T, s store.Store) {
	es := make([]evidence.Event, bulkN)
	for i := range es {
		e := fullEvent(fmt.Sprintf("bulkev_%04d", i), fmt.Sprintf("01J00000000000000000%06d", i), evidence.KindDecision, base+int64(i))
		if err := e.Seal(0, ""); err != nil {
			t.Fatalf("Seal: %v", err)
		}
		es[i] = e
	}
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.AppendEvents(ctx, es) })
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		got, err := tx.ListChainEvents(ctx, store.ChainQuery{})
		if err != nil {
			return err
		}
		sameEvents(t, got, es) // job ids and seqs sort as es is ordered
		return nil
	})

	// One event already stored fails the whole call, and the transaction with it.
	more := []evidence.Event{fullEvent("bulkev_new", "01J0000000000000000NEW0001", evidence.KindDecision, base), es[600]}
	if err := more[0].Seal(0, ""); err != nil {
		t.Fatalf("Seal: %v", err)
	}
	err := s.ReadWrite(t.Context(), func(ctx context.Context, tx store.Tx) error { return tx.AppendEvents(ctx, more) })
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("AppendEvents with a stored event: %v, want ErrConflict", err)
	}
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		if got, err := tx.ListEvents(ctx, "bulkev_new"); err != nil || len(got) != 0 {
			t.Errorf("a refused AppendEvents stored %d events (%v)", len(got), err)
		}
		return nil
	})
}
