package jobs_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/storetest"
)

// faultyStore fails the next write transactions with queued errors, before running them.
type faultyStore struct {
	store.Store
	mu    sync.Mutex
	fails []error
}

func (f *faultyStore) failNext(errs ...error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fails = append(f.fails, errs...)
}

func (f *faultyStore) ReadWrite(ctx context.Context, fn func(context.Context, store.Tx) error) error {
	f.mu.Lock()
	if len(f.fails) > 0 {
		err := f.fails[0]
		f.fails = f.fails[1:]
		f.mu.Unlock()
		return err
	}
	f.mu.Unlock()
	return f.Store.ReadWrite(ctx, fn)
}

func TestStoreFaults(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		ctx := context.Background()
		fs := &faultyStore{Store: st}
		e := newEnv(t, fs, testPolicy)

		t.Run("lock busy is recorded afterwards and retryable", func(t *testing.T) {
			j := e.decide(t, payment)
			fs.failNext(store.ErrBusy)
			_, err := e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: j.ID, JobHash: j.Hash})
			if ee := wantErr(t, err, jobs.CodeAborted, jobs.ReasonLockBusy); !ee.Retryable() {
				t.Fatal("LOCK_BUSY must be retryable")
			}
			if got := e.job(t, j.ID); !sameJob(got, j) {
				t.Fatalf("job changed: %+v", got)
			}
			ev := e.wantKinds(t, j.ID, "decision,conflict:LOCK_BUSY")[1]
			if ev.Principal != alice.ID || ev.Status != "pending_approval" {
				t.Fatalf("conflict event %+v", ev)
			}
			_, err = e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: j.ID, JobHash: j.Hash})
			wantNoErr(t, err)
			e.wantKinds(t, j.ID, "decision,conflict:LOCK_BUSY,approval")
		})

		t.Run("lock busy on a new job records nothing", func(t *testing.T) {
			req := payment.request(newID("busy"))
			fs.failNext(store.ErrBusy)
			_, err := e.svc.Decide(ctx, decider, req)
			wantErr(t, err, jobs.CodeAborted, jobs.ReasonLockBusy)
			_, err = e.svc.GetJob(ctx, auditor, req.JobID)
			wantErr(t, err, jobs.CodeNotFound, jobs.ReasonNotFound)
			e.wantKinds(t, req.JobID, "")
		})

		t.Run("unavailable", func(t *testing.T) {
			j := e.decide(t, payment)
			fs.failNext(store.ErrUnavailable)
			_, err := e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: j.ID, JobHash: j.Hash})
			if ee := wantErr(t, err, jobs.CodeUnavailable, jobs.ReasonUnavailable); !ee.Retryable() {
				t.Fatal("UNAVAILABLE must be retryable")
			}
			e.wantKinds(t, j.ID, "decision")
		})

		t.Run("incomplete evidence aborts the transition", func(t *testing.T) {
			j := e.decide(t, payment)
			err := st.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
				j.TraceID = "" // every event about a job needs its trace id
				return tx.UpdateJob(ctx, j)
			})
			wantNoErr(t, err)
			_, err = e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: j.ID, JobHash: j.Hash})
			if _, ok := jobs.AsError(err); ok || !errors.Is(err, evidence.ErrIncomplete) {
				t.Fatalf("err = %v, want an internal incomplete-evidence error", err)
			}
			v, err := e.svc.GetJob(ctx, auditor, j.ID)
			wantNoErr(t, err)
			if v.Job.Status != store.StatusPendingApproval || len(v.Approvals) != 0 {
				t.Fatalf("the transition happened without its evidence: %+v", v)
			}
			e.wantKinds(t, j.ID, "decision")
		})
	})
}
