package jobs_test

import (
	"context"
	"sync"
	"testing"

	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/storetest"
)

// failAtStore fails one write transaction, the at-th after arming (from 0), without
// running it, as an unreachable database does.
type failAtStore struct {
	store.Store
	mu sync.Mutex
	at int // -1: disarmed
}

func (f *failAtStore) ReadWrite(ctx context.Context, fn func(context.Context, store.Tx) error) error {
	f.mu.Lock()
	fire := f.at == 0
	f.at--
	f.mu.Unlock()
	if fire {
		return store.ErrUnavailable
	}
	return f.Store.ReadWrite(ctx, fn)
}

// TestBatchAmbiguousCommitUnknownAnswersUnavailable: when a batch's commit reports an
// error after it committed, and the database cannot be asked whether it did, no call is
// run again (that would write it twice) and none is answered success: each gets
// UNAVAILABLE, as a lone call would, and what committed is there once.
func TestBatchAmbiguousCommitUnknownAnswersUnavailable(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, base store.Store) {
		t.Parallel()
		st := &ambiguousStore{Store: base}
		f := &failAtStore{Store: st, at: -1}
		g := &gatedStore{Store: f}
		e := bigBatches.env(t, g, testPolicy)
		ok, self := e.decide(t, payment), e.decide(t, payment)
		var okRes, selfRes jobs.ApproveResult
		calls, release := lineUpWrites(t, e, g, context.Background(),
			approveCall(e, alice, ok, &okRes), approveCall(e, decider, self, &selfRes))
		st.arm(1) // the holder's transaction, then the batch commits and reports a failure
		f.mu.Lock()
		f.at = 2 // the holder, the batch, then the check whether the batch committed
		f.mu.Unlock()
		release()
		for _, c := range calls {
			wantErr(t, c.wait(t).err, jobs.CodeUnavailable, jobs.ReasonUnavailable)
		}
		e.wantKinds(t, ok.ID, "decision,approval")
		e.wantKinds(t, self.ID, "decision,refusal:SELF_APPROVAL")
	})
}

// TestBatchAmbiguousDecideCommitAnswersFirstDecision: a Decide batch whose commit
// reports an error after it committed is not run again, which would answer each first
// decision as a repeat (AlreadyDecided): the batch is found to have committed, and each
// caller gets its first decision, recorded once.
func TestBatchAmbiguousDecideCommitAnswersFirstDecision(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, base store.Store) {
		t.Parallel()
		a := &ambiguousStore{Store: base}
		g := &gatedStore{Store: a}
		e := bigBatches.env(t, g, testPolicy)
		reqs := []jobs.DecideRequest{payment.request(newID("amb")), report.request(newID("amb"))}
		calls, release := lineUp(t, e, g, context.Background(), reqs...)
		a.arm(1) // the holder's transaction, then the batch commits and reports a failure
		release()
		for _, c := range calls {
			wantNoErr(t, c.wait(t).err)
			if c.res.AlreadyDecided {
				t.Errorf("the first Decide of %s was answered as a repeat", c.req.JobID)
			}
			e.wantKinds(t, c.req.JobID, "decision")
		}
	})
}
