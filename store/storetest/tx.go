package storetest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
)

func testRollbackOnError(t *testing.T, s store.Store) {
	ctx := t.Context()
	sentinel := errors.New("callback failed")
	job, snap := fullJob("job_rb", base), snapshot(1, base)
	err := s.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		if err := tx.InsertJob(ctx, job); err != nil {
			return err
		}
		if _, err := tx.PutSnapshot(ctx, snap); err != nil {
			return err
		}
		if err := tx.SetActiveSnapshot(ctx, snap.ID, time.UnixMicro(base), "alice"); err != nil {
			return err
		}
		e := fullEvent(job.ID, "01JRB", evidence.KindDecision, base)
		if err := appendSealed(ctx, tx, &e); err != nil {
			return err
		}
		return sentinel
	})
	if err != sentinel { // the contract: returned as is
		t.Errorf("ReadWrite returned %v, want the callback's error as is", err)
	}
	assertEmpty(t, s, job.ID, snap.ID)
}

// assertEmpty checks that nothing of a rolled-back transaction is visible.
func assertEmpty(t *testing.T, s store.Store, jobID, snapID string) {
	t.Helper()
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		if _, err := tx.GetJob(ctx, jobID, false); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("job after rollback: %v, want ErrNotFound", err)
		}
		if snapID != "" {
			if _, err := tx.GetSnapshot(ctx, snapID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("snapshot after rollback: %v, want ErrNotFound", err)
			}
			if _, err := tx.ActiveSnapshotID(ctx); !errors.Is(err, snapshots.ErrNoActive) {
				t.Errorf("active snapshot after rollback: %v, want ErrNoActive", err)
			}
		}
		if evs, err := tx.ListEvents(ctx, jobID); err != nil || len(evs) != 0 {
			t.Errorf("events after rollback: %d, %v; want none", len(evs), err)
		}
		return nil
	})
}

func testRollbackOnPanic(t *testing.T, s store.Store) {
	job := fullJob("job_panic", base)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the callback's panic did not propagate")
			}
		}()
		_ = s.ReadWrite(t.Context(), func(ctx context.Context, tx store.Tx) error {
			if err := tx.InsertJob(ctx, job); err != nil {
				return err
			}
			panic("callback panics")
		})
	}()
	assertEmpty(t, s, job.ID, "")
	// The connection went back to the pool clean: the next write gets through.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := s.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error { return tx.InsertJob(ctx, job) }); err != nil {
		t.Fatalf("ReadWrite after a panic: %v", err)
	}
}

func testCanceledContext(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for name, run := range map[string]func(context.Context, func(context.Context, store.Tx) error) error{
		"ReadWrite": s.ReadWrite, "Read": s.Read,
	} {
		called := false
		err := run(ctx, func(context.Context, store.Tx) error { called = true; return nil })
		if !errors.Is(err, context.Canceled) || called {
			t.Errorf("%s with a canceled context: %v (callback ran: %v), want context.Canceled", name, err, called)
		}
	}
}

func testReadIsReadOnly(t *testing.T, s store.Store) {
	job := fullJob("job_ro", base)
	err := s.Read(t.Context(), func(ctx context.Context, tx store.Tx) error { return tx.InsertJob(ctx, job) })
	if err == nil {
		t.Error("InsertJob in a Read transaction succeeded")
	}
	assertEmpty(t, s, job.ID, "")
}

func testReadIsConsistent(t *testing.T, s store.Store) {
	job := fullJob("job_view", base)
	job.Attempt = 0
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.InsertJob(ctx, job) })
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		before, err := tx.GetJob(ctx, job.ID, false)
		if err != nil {
			return err
		}
		// Another transaction commits a change while this one is open…
		write(t, s, func(ctx context.Context, tx store.Tx) error {
			j, err := tx.GetJob(ctx, job.ID, true)
			if err != nil {
				return err
			}
			j.Attempt = 99
			return tx.UpdateJob(ctx, j)
		})
		// …and this one still sees the state it started with.
		after, err := tx.GetJob(ctx, job.ID, false)
		if err != nil {
			return err
		}
		if before.Attempt != 0 || after.Attempt != 0 {
			t.Errorf("a Read saw attempt %d then %d, want 0 both times", before.Attempt, after.Attempt)
		}
		return nil
	})
	if got := getJob(t, s, job.ID).Attempt; got != 99 {
		t.Errorf("after the write: attempt %d, want 99", got)
	}
}

// testConcurrentIncrements races read-modify-write transactions on one row: with
// row locks, serializable isolation and whole-transaction retries, none is lost.
func testConcurrentIncrements(t *testing.T, s store.Store) {
	const n = 20
	job := fullJob("job_counter", base)
	job.Attempt = 0
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.InsertJob(ctx, job) })
	var calls, busy atomic.Int64
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for try := 1; ; try++ {
				err := s.ReadWrite(t.Context(), func(ctx context.Context, tx store.Tx) error {
					calls.Add(1)
					j, err := tx.GetJob(ctx, job.ID, true)
					if err != nil {
						return err
					}
					j.Attempt++
					return tx.UpdateJob(ctx, j)
				})
				// A client may retry ErrBusy, as it would a LOCK_BUSY answer.
				if errors.Is(err, store.ErrBusy) && try < 5 {
					busy.Add(1)
					continue
				}
				errs <- err
				return
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("increment: %v", err)
		}
	}
	if got := getJob(t, s, job.ID).Attempt; got != n {
		t.Errorf("after %d increments: attempt %d", n, got)
	}
	t.Logf("%d increments took %d attempts and %d ErrBusy", n, calls.Load(), busy.Load())
}

// testWriteSkew runs the classic write skew: two transactions each read two jobs and
// cancel one of them only if both are still approved. Run one after the other, the
// second sees the first's cancel and does nothing; a serializable store must end the
// same way when they overlap, by making one of them retry.
func testWriteSkew(t *testing.T, s store.Store) {
	ids := []string{"job_skew_a", "job_skew_b"}
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for _, id := range ids {
			j := fullJob(id, base)
			j.Status = store.StatusApproved
			if err := tx.InsertJob(ctx, j); err != nil {
				return err
			}
		}
		return nil
	})
	// Each waits, on its first attempt, for the other to have read too. A backend
	// whose write transactions cannot overlap never gets both there: the wait ends
	// after a moment and the transactions simply run in turn.
	var readBoth sync.WaitGroup
	readBoth.Add(2)
	arrived := make(chan struct{})
	go func() { readBoth.Wait(); close(arrived) }()
	var calls atomic.Int64
	errs := make(chan error, 2)
	for i := range 2 {
		go func() {
			first := true
			errs <- s.ReadWrite(t.Context(), func(ctx context.Context, tx store.Tx) error {
				calls.Add(1)
				approved := 0
				for _, id := range ids {
					j, err := tx.GetJob(ctx, id, false)
					if err != nil {
						return err
					}
					if j.Status == store.StatusApproved {
						approved++
					}
				}
				if first {
					first = false
					readBoth.Done()
					select {
					case <-arrived:
					case <-time.After(500 * time.Millisecond):
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				if approved < 2 {
					return nil
				}
				j, err := tx.GetJob(ctx, ids[i], false)
				if err != nil {
					return err
				}
				j.Status = store.StatusCancelled
				return tx.UpdateJob(ctx, j)
			})
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("ReadWrite: %v", err)
		}
	}
	cancelled := 0
	for _, id := range ids {
		if getJob(t, s, id).Status == store.StatusCancelled {
			cancelled++
		}
	}
	if cancelled != 1 {
		t.Errorf("%d jobs cancelled, want exactly 1 (write skew)", cancelled)
	}
	t.Logf("write skew: %d callback runs for 2 transactions", calls.Load())
}
