package jobs_test

import (
	"context"
	"errors"
	"testing"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/storetest"
)

func TestBatchSharesOneTransaction(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		g := &gatedStore{Store: st}
		e := bigBatches.env(t, g, testPolicy)
		specs := []jobSpec{payment, transfer, report, export}
		var reqs []jobs.DecideRequest
		for i := range 40 {
			reqs = append(reqs, specs[i%len(specs)].request(newID("shared")))
		}
		before := g.writes.Load()
		calls, release := lineUp(t, e, g, context.Background(), reqs...)
		release()
		for _, c := range calls {
			c.wait(t)
			wantNoErr(t, c.err)
			if c.res.AlreadyDecided || c.res.Job.ID != c.req.JobID || c.res.Job.TraceID != c.req.TraceID {
				t.Fatalf("%s: %+v", c.req.JobID, c.res)
			}
			if got := e.job(t, c.req.JobID); !sameJob(got, c.res.Job) {
				t.Fatalf("stored %+v\nanswered %+v", got, c.res.Job)
			}
			if ev := e.wantKinds(t, c.req.JobID, "decision")[0]; ev.JobHash != c.res.Job.Hash || ev.Status != string(c.res.Job.Status) {
				t.Fatalf("decision event %+v", ev)
			}
		}
		// One transaction held the door, one wrote all 40.
		if n := g.writes.Load() - before; n != 2 {
			t.Fatalf("%d write transactions for 41 Decides, want 2", n)
		}
	})
}

func TestBatchConcurrentDistinctJobs(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		g := &gatedStore{Store: st}
		e := batched.realEnv(t, g, testPolicy)
		const n = 64
		before := g.writes.Load()
		ids := make([]string, n)
		parallel(n, func(i int) {
			r := payment.request(newID("free"))
			ids[i] = r.JobID
			if _, err := e.svc.Decide(context.Background(), decider, r); err != nil {
				t.Errorf("Decide %s: %v", r.JobID, err)
			}
		})
		for _, id := range ids {
			if j := e.job(t, id); j.Status != store.StatusPendingApproval {
				t.Fatalf("%s is %s", id, j.Status)
			}
			e.wantKinds(t, id, "decision")
		}
		t.Logf("%d concurrent Decides in %d transactions", n, g.writes.Load()-before)
	})
}

func TestBatchDuplicatesApplyInOrder(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		g := &gatedStore{Store: st}
		e := bigBatches.env(t, g, testPolicy)
		a := payment.request(newID("dup"))
		again := a
		again.TraceID = "trc-again"
		tampered := a
		tampered.Payload = []byte(`{"amount": 99999, "currency": "EUR", "invoice": "INV-1001"}`)
		mate := report.request(newID("mate"))
		before := g.writes.Load()
		calls, release := lineUp(t, e, g, context.Background(), a, again, tampered, mate, again)
		release()
		for _, c := range calls {
			c.wait(t)
		}
		first, repeat, mismatch, other, last := calls[0], calls[1], calls[2], calls[3], calls[4]
		wantNoErr(t, first.err)
		if first.res.AlreadyDecided || first.res.Job.TraceID != a.TraceID {
			t.Fatalf("first: %+v", first.res)
		}
		for _, c := range []*decideCall{repeat, last} {
			wantNoErr(t, c.err)
			if !c.res.AlreadyDecided || !sameJob(c.res.Job, first.res.Job) {
				t.Fatalf("repeat: %+v", c.res)
			}
		}
		ee := wantErr(t, mismatch.err, jobs.CodeAborted, jobs.ReasonJobHashMismatch)
		if ee.Meta["expected_job_hash"] != first.res.Job.Hash || ee.Meta["presented_job_hash"] == first.res.Job.Hash {
			t.Fatalf("meta %v", ee.Meta)
		}
		wantNoErr(t, other.err)
		if other.res.AlreadyDecided || other.res.Job.Status != store.StatusAllowed {
			t.Fatalf("batch-mate: %+v", other.res)
		}
		if got := e.job(t, a.JobID); !sameJob(got, first.res.Job) {
			t.Fatalf("stored %+v", got)
		}
		e.wantKinds(t, a.JobID, "decision,conflict:JOB_HASH_MISMATCH")
		e.wantKinds(t, mate.JobID, "decision")
		// The mismatch is an answer, not a failure: the batch committed as one transaction.
		if n := g.writes.Load() - before; n != 2 {
			t.Fatalf("%d write transactions, want 2", n)
		}
	})
}

func TestBatchRedecidesConflict(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		g := &gatedStore{Store: st}
		e := bigBatches.env(t, g, testPolicy)
		old := e.decide(t, payment)
		setStatus(t, st, old.ID, store.StatusConflict)
		redo := payment.request(old.ID)
		calls, release := lineUp(t, e, g, context.Background(), redo, redo)
		release()
		first, second := calls[0].wait(t), calls[1].wait(t)
		wantNoErr(t, first.err)
		wantNoErr(t, second.err)
		if first.res.AlreadyDecided || first.res.Job.Revision != 2 || first.res.Job.Status != store.StatusPendingApproval {
			t.Fatalf("re-decision: %+v", first.res)
		}
		if !second.res.AlreadyDecided || !sameJob(second.res.Job, first.res.Job) {
			t.Fatalf("the second sees the first: %+v", second.res)
		}
		e.wantKinds(t, old.ID, "decision,decision")
	})
}

func TestBatchFailureFallsBackPerJob(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		g := &gatedStore{Store: st}
		e := bigBatches.env(t, g, testPolicy)

		t.Run("an injected failure", func(t *testing.T) {
			reqs := []jobs.DecideRequest{payment.request(newID("inj")), report.request(newID("inj")), export.request(newID("inj"))}
			before := g.writes.Load()
			calls, release := lineUp(t, e, g, context.Background(), reqs...)
			g.failNext(store.ErrBusy)
			release()
			for _, c := range calls {
				c.wait(t)
				wantNoErr(t, c.err)
				if c.res.AlreadyDecided {
					t.Fatalf("%+v", c.res)
				}
				e.wantKinds(t, c.req.JobID, "decision")
			}
			// The holder, the failed batch, then one transaction per job.
			if n := g.writes.Load() - before; n != 2+int64(len(reqs)) {
				t.Fatalf("%d write transactions, want %d", n, 2+len(reqs))
			}
		})

		t.Run("a lost insert race reruns the batch, not each job", func(t *testing.T) {
			// ErrConflict is a concurrent transaction's insert of one of the batch's new
			// ids; the next attempt sees it, so the batch runs again as a whole.
			reqs := []jobs.DecideRequest{payment.request(newID("race")), report.request(newID("race")), export.request(newID("race"))}
			before := g.writes.Load()
			calls, release := lineUp(t, e, g, context.Background(), reqs...)
			g.failNext(store.ErrConflict)
			release()
			for _, c := range calls {
				c.wait(t)
				wantNoErr(t, c.err)
				e.wantKinds(t, c.req.JobID, "decision")
			}
			// The holder, the batch that lost the race, and the batch again.
			if n := g.writes.Load() - before; n != 3 {
				t.Fatalf("%d write transactions, want 3", n)
			}
		})

		t.Run("a bad job does not fail its batch-mates", func(t *testing.T) {
			// A job in conflict whose stored trace id is gone: its re-decision's evidence
			// is incomplete, which fails any transaction it is in.
			bad := e.decide(t, payment)
			err := st.ReadWrite(context.Background(), func(ctx context.Context, tx store.Tx) error {
				j, err := tx.GetJob(ctx, bad.ID, true)
				if err != nil {
					return err
				}
				j.Status, j.TraceID = store.StatusConflict, ""
				return tx.UpdateJob(ctx, j)
			})
			wantNoErr(t, err)
			redo := payment.request(bad.ID)
			redo.TraceID = ""
			mates := []jobs.DecideRequest{report.request(newID("mate")), payment.request(newID("mate"))}
			calls, release := lineUp(t, e, g, context.Background(), mates[0], redo, mates[1])
			release()
			for _, c := range calls {
				c.wait(t)
			}
			if _, ok := jobs.AsError(calls[1].err); ok || !errors.Is(calls[1].err, evidence.ErrIncomplete) {
				t.Fatalf("bad job: err = %v, want an internal incomplete-evidence error", calls[1].err)
			}
			if got := e.job(t, bad.ID); got.Status != store.StatusConflict || got.Revision != 1 {
				t.Fatalf("bad job changed: %+v", got)
			}
			e.wantKinds(t, bad.ID, "decision")
			for _, c := range []*decideCall{calls[0], calls[2]} {
				wantNoErr(t, c.err)
				e.wantKinds(t, c.req.JobID, "decision")
			}
		})
	})
}

func TestBatchCallerLeaves(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		g := &gatedStore{Store: st}
		e := bigBatches.env(t, g, testPolicy)

		t.Run("before its batch runs", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			gone := payment.request(newID("gone"))
			stays := payment.request(newID("stays"))
			calls, release := lineUp(t, e, g, context.Background(), stays)
			calls = append(calls, e.start(ctx, gone))
			waitFor(t, func() bool { return jobs.QueuedDecides(e.svc) == 2 })
			cancel()
			// It is answered at once, while its batch still waits.
			if c := calls[1].wait(t); !errors.Is(c.err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", c.err)
			}
			release()
			wantNoErr(t, calls[0].wait(t).err)
			// Whether it committed or not, a retry answers from the one decision.
			res, err := e.svc.Decide(context.Background(), decider, gone)
			wantNoErr(t, err)
			e.wantKinds(t, gone.JobID, "decision")
			if res.Job.Hash == "" {
				t.Fatalf("%+v", res)
			}
		})

		t.Run("while its batch runs, with a batch-mate", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			gone := payment.request(newID("gone"))
			stays := payment.request(newID("stays"))
			calls, release := lineUp(t, e, g, context.Background())
			calls = append(calls, e.start(ctx, gone), e.start(context.Background(), stays))
			waitFor(t, func() bool { return jobs.QueuedDecides(e.svc) == 2 })
			arrived, releaseBatch := g.holdNext()
			release()
			<-arrived // the batch is at the door of its transaction
			cancel()
			if c := calls[0].wait(t); !errors.Is(c.err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", c.err)
			}
			releaseBatch()
			wantNoErr(t, calls[1].wait(t).err)
			// The batch-mate still waited, so the batch committed, the gone caller's job too.
			res, err := e.svc.Decide(context.Background(), decider, gone)
			wantNoErr(t, err)
			if !res.AlreadyDecided {
				t.Fatalf("retry: %+v", res)
			}
			e.wantKinds(t, gone.JobID, "decision")
		})

		t.Run("while its batch runs, alone", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			gone := payment.request(newID("gone"))
			calls, release := lineUp(t, e, g, ctx, gone)
			arrived, releaseBatch := g.holdNext()
			defer releaseBatch()
			release()
			<-arrived
			cancel()
			if c := calls[0].wait(t); !errors.Is(c.err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", c.err)
			}
			// Nobody waits for the batch any more: its transaction ends unwritten, and a
			// retry decides afresh.
			res, err := e.svc.Decide(context.Background(), decider, gone)
			wantNoErr(t, err)
			if res.AlreadyDecided {
				t.Fatalf("the abandoned batch committed: %+v", res)
			}
		})
	})
}

func TestBatchCloseDrains(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		g := &gatedStore{Store: st}
		e := bigBatches.env(t, g, testPolicy)
		reqs := []jobs.DecideRequest{payment.request(newID("drain")), report.request(newID("drain"))}
		calls, release := lineUp(t, e, g, context.Background(), reqs...)
		closed := make(chan struct{})
		go func() { e.svc.Close(); close(closed) }()
		select {
		case <-closed:
			t.Fatal("Close returned while a batch was queued")
		case <-calls[0].done:
			t.Fatal("a queued Decide returned before its batch ran")
		default:
		}
		release()
		for _, c := range calls {
			wantNoErr(t, c.wait(t).err)
			e.wantKinds(t, c.req.JobID, "decision")
		}
		<-closed
		// After Close, Decide still answers, in a transaction of its own.
		before := g.writes.Load()
		j := e.decide(t, payment)
		if n := g.writes.Load() - before; n != 1 || j.Status != store.StatusPendingApproval {
			t.Fatalf("%d transactions, job %+v", n, j)
		}
	})
}
