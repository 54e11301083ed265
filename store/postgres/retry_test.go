package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/postgres"
	"github.com/agate-pdp/agate/store/postgres/pgtest"
)

// TestCommitTimeSerializationFailure runs two transactions that each count the pending
// jobs and create "the" pending job only if there is none (write skew on a predicate),
// and each always create a ledger job of their own. Both finish every statement before
// either commits, so PostgreSQL's serializable snapshot isolation can only fail one of
// them at COMMIT. The store must run that one again in a fresh transaction: in the end
// exactly one pending job exists and each acknowledged ledger job exactly once. With a
// budget of one attempt the loser reports ErrBusy instead, and none of its work is kept.
func TestCommitTimeSerializationFailure(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		attempts int
		wantBusy int
	}{{10, 0}, {1, 1}} {
		t.Run(fmt.Sprintf("attempts=%d", c.attempts), func(t *testing.T) {
			s := pgtest.OpenURL(t, pgtest.URL(t), postgres.Options{MaxAttempts: c.attempts})
			prefix := fmt.Sprintf("a%d_", c.attempts)
			r := skew(t, s, prefix)
			busy := 0
			for i, err := range r.errs {
				switch {
				case errors.Is(err, store.ErrBusy):
					busy++
				case err != nil:
					t.Errorf("transaction %d: %v", i, err)
				}
			}
			if busy != c.wantBusy {
				t.Errorf("%d transactions ended in ErrBusy, want %d", busy, c.wantBusy)
			}
			for i, ok := range r.statementsDone {
				if !ok {
					t.Errorf("transaction %d failed before COMMIT: the failure was not at commit time", i)
				}
			}
			// Without retries each transaction runs once. With them the loser runs again;
			// under load both may fail at COMMIT and retry, so more runs are fine.
			if got, want := r.calls.Load(), int64(3-c.wantBusy); got < want || c.attempts == 1 && got != want {
				t.Errorf("%d callback runs, want %d (a retry of the loser)", got, want)
			}
			err := s.Read(t.Context(), func(ctx context.Context, tx store.Tx) error {
				n, err := tx.CountJobs(ctx, []store.Status{store.StatusPendingApproval}, "")
				if err != nil {
					return err
				}
				if n != 1 {
					t.Errorf("%d pending jobs, want exactly 1", n)
				}
				for i, err := range r.errs {
					_, gerr := tx.GetJob(ctx, fmt.Sprintf("%sledger_%d", prefix, i), false)
					if acked := err == nil; acked != (gerr == nil) {
						t.Errorf("transaction %d acknowledged=%v but its ledger job: %v", i, acked, gerr)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

type skewResult struct {
	errs           [2]error
	statementsDone [2]bool // the first attempt ran every statement without error
	calls          atomic.Int64
}

func skew(t *testing.T, s store.Store, prefix string) *skewResult {
	var r skewResult
	var ready sync.WaitGroup
	ready.Add(2)
	release := make(chan struct{})
	go func() { ready.Wait(); close(release) }()
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			first := true
			r.errs[i] = s.ReadWrite(t.Context(), func(ctx context.Context, tx store.Tx) error {
				r.calls.Add(1)
				firstRun := first
				first = false
				if firstRun {
					defer func() { ready.Done(); <-release }() // both reach COMMIT together
				}
				n, err := tx.CountJobs(ctx, []store.Status{store.StatusPendingApproval}, "")
				if err != nil {
					return err
				}
				if n == 0 {
					j := store.Job{ID: fmt.Sprintf("%spending_%d", prefix, i), Status: store.StatusPendingApproval, Snapshot: "snap_a"}
					if err := tx.InsertJob(ctx, j); err != nil {
						return err
					}
				}
				if err := tx.InsertJob(ctx, store.Job{ID: fmt.Sprintf("%sledger_%d", prefix, i), Status: store.StatusAllowed}); err != nil {
					return err
				}
				if firstRun {
					r.statementsDone[i] = true
				}
				return nil
			})
		})
	}
	wg.Wait()
	return &r
}

// TestDeadlockRetried locks two rows in opposite orders from two transactions.
// PostgreSQL breaks the deadlock by failing one (40P01); the store retries it, and
// both transactions apply once.
func TestDeadlockRetried(t *testing.T) {
	t.Parallel()
	s := pgtest.Open(t)
	ids := [2]string{"job_lock_a", "job_lock_b"}
	err := s.ReadWrite(t.Context(), func(ctx context.Context, tx store.Tx) error {
		for _, id := range ids {
			if err := tx.InsertJob(ctx, store.Job{ID: id, Status: store.StatusApproved}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var ready sync.WaitGroup
	ready.Add(2)
	release := make(chan struct{})
	go func() { ready.Wait(); close(release) }()
	var calls, deadlocks atomic.Int64
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			first := true
			err := s.ReadWrite(t.Context(), func(ctx context.Context, tx store.Tx) error {
				calls.Add(1)
				for k, id := range []string{ids[i], ids[1-i]} {
					j, err := tx.GetJob(ctx, id, true)
					if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "40P01" {
						deadlocks.Add(1)
					}
					if err != nil {
						return err
					}
					if k == 0 && first {
						first = false
						ready.Done()
						<-release
					}
					j.Attempt++
					if err := tx.UpdateJob(ctx, j); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Errorf("transaction %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	// The deadlock victim runs again; that retry may also meet a serialization failure
	// behind the winner's commit and run once more, so 3 runs is the least, not the count.
	// On a loaded machine the detector may fire again in a retry; what must hold is that
	// at least one deadlock happened and each transaction applied exactly once (below).
	if deadlocks.Load() < 1 || calls.Load() < 3 {
		t.Errorf("%d deadlocks, %d callback runs; want at least 1 and at least 3", deadlocks.Load(), calls.Load())
	}
	err = s.Read(t.Context(), func(ctx context.Context, tx store.Tx) error {
		for _, id := range ids {
			j, err := tx.GetJob(ctx, id, false)
			if err != nil {
				return err
			}
			if j.Attempt != 2 {
				t.Errorf("%s: attempt %d, want 2 (one increment per transaction)", id, j.Attempt)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
