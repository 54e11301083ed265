package jobs_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/storetest"
)

// holdKey marks a caller's context whose own write transactions holdStore holds.
type holdKey struct{}

// holdStore holds every write transaction run under a context marked with holdKey until
// open is closed: a batch of several callers runs under a context of its own, so only
// the marked caller's transactions of its own wait.
type holdStore struct {
	store.Store
	open chan struct{}
}

func (h *holdStore) ReadWrite(ctx context.Context, fn func(context.Context, store.Tx) error) error {
	if ctx.Value(holdKey{}) != nil {
		select {
		case <-h.open:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return h.Store.ReadWrite(ctx, fn)
}

// TestBatchFailedBatchKeepsSameJobOrder: a Reject queued before an Approve of the same
// job must be applied first, batch failure or not: one Reject vetoes the job. When the
// Reject's batch fails, the batcher frees the job's key as soon as that batch ends, and
// the Reject runs again alone on its caller's goroutine while the Approve queued behind
// it forms the next batch: the two race for the row, and the later Approve can win,
// approving a job whose veto arrived first (the veto is then refused ALREADY_APPROVED).
// Here the Reject's lone transaction is held until the Approve has returned (or 3s), so
// the race is lost every time.
func TestBatchFailedBatchKeepsSameJobOrder(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		h := &holdStore{Store: st, open: make(chan struct{})}
		g := &gatedStore{Store: h}
		e := bigBatches.env(t, g, testPolicy)
		j, mate := e.decide(t, payment), e.decide(t, payment)
		var app, mateRes jobs.ApproveResult
		approveJ := approveCall(e, alice, j, &app)
		calls, release := lineUpWrites(t, e, g, context.Background(),
			lifecycle{"Reject", func(ctx context.Context) (err error) {
				ctx = context.WithValue(ctx, holdKey{}, true)
				_, err = e.svc.Reject(ctx, bob, jobs.RejectRequest{JobID: j.ID, JobHash: j.Hash, Reason: "veto"})
				return err
			}},
			approveCall(e, carol, mate, &mateRes),
			approveJ,
		)
		g.breakNext() // the batch of the Reject and the mate fails at its commit
		release()
		select {
		case <-calls[2].done:
		case <-time.After(3 * time.Second): // the Approve waits for the Reject, as it should
		}
		close(h.open)
		for _, c := range calls {
			c.wait(t)
		}
		wantNoErr(t, calls[1].err)
		if calls[0].err != nil {
			t.Errorf("the Reject, queued first, was refused: %v (the Approve queued after it: %v, job %s)",
				calls[0].err, calls[2].err, app.Job.Status)
		}
		wantErr(t, calls[2].err, jobs.CodeFailedPrecondition, jobs.ReasonAlreadyRejected)
		if got := e.job(t, j.ID); got.Status != store.StatusRejected {
			t.Fatalf("the job is %s after a veto that arrived before the approval", got.Status)
		}
	})
}

// TestBatchRefusalEvidenceKeepsOrder: a Publish refused QUORUM_NOT_MET in a batch is
// recorded after the batch, in a transaction of its caller's, once the batcher has
// already freed the job for the next call on it. An Approve queued behind the Publish
// then commits first, and the chain reads decision, approval, refusal: a refusal of a
// Publish for want of a quorum, recorded against a job that the same event shows as
// approved, after the approval that arrived later. Here the caller's recording is held
// until the Approve has returned (or 3s).
func TestBatchRefusalEvidenceKeepsOrder(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		h := &holdStore{Store: st, open: make(chan struct{})}
		g := &gatedStore{Store: h}
		e := bigBatches.env(t, g, testPolicy)
		j, mate := e.decide(t, payment), e.decide(t, payment)
		var pub jobs.PublishResult
		var app, mateRes jobs.ApproveResult
		publish := publishCall(e, j.ID, j.Hash, &pub)
		calls, release := lineUpWrites(t, e, g, context.Background(),
			lifecycle{publish.name, func(ctx context.Context) error {
				return publish.fn(context.WithValue(ctx, holdKey{}, true))
			}},
			approveCall(e, carol, mate, &mateRes), // a batch of several runs under a context of its own
			approveCall(e, alice, j, &app),
		)
		release()
		select {
		case <-calls[2].done:
		case <-time.After(3 * time.Second): // the Approve waits for the refusal, as it should
		}
		close(h.open)
		wantErr(t, calls[0].wait(t).err, jobs.CodeFailedPrecondition, jobs.ReasonQuorumNotMet)
		wantNoErr(t, calls[1].wait(t).err)
		wantNoErr(t, calls[2].wait(t).err)
		evs := e.wantKinds(t, j.ID, "decision,refusal:QUORUM_NOT_MET,approval")
		if len(evs) > 1 && evs[1].Status != string(store.StatusPendingApproval) {
			t.Errorf("the QUORUM_NOT_MET refusal records the job as %s", evs[1].Status)
		}
	})
}

// ambiguousStore commits the write transaction after skip more have run, and then
// reports a failure, as a connection lost during COMMIT does: the caller cannot tell
// whether it committed.
type ambiguousStore struct {
	store.Store
	mu    sync.Mutex
	armed bool
	skip  int
}

var errAmbiguous = errors.New("injected: connection lost during COMMIT")

func (a *ambiguousStore) arm(skip int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.armed, a.skip = true, skip
}

func (a *ambiguousStore) ReadWrite(ctx context.Context, fn func(context.Context, store.Tx) error) error {
	a.mu.Lock()
	fire := a.armed && a.skip == 0
	if fire {
		a.armed = false
	} else if a.armed {
		a.skip--
	}
	a.mu.Unlock()
	err := a.Store.ReadWrite(ctx, fn)
	if fire && err == nil {
		return errAmbiguous
	}
	return err
}

// TestBatchAmbiguousCommitDuplicatesEvidence: a batch whose COMMIT reports an error
// after it did commit (a lost connection; CockroachDB's ambiguous result) reruns every
// call alone, as if nothing had been written. A lone call in that spot answers the
// error; a batched one writes again: the self-approval is refused and recorded twice,
// the outsider's probe lands twice on its chain, and the approver, whose approval
// committed, is answered AlreadyApproved with a repeat approval on the chain.
func TestBatchAmbiguousCommitDuplicatesEvidence(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		a := &ambiguousStore{Store: st}
		g := &gatedStore{Store: a}
		e := bigBatches.env(t, g, testPolicy)
		ok, self, other := e.decide(t, payment), e.decide(t, payment), e.decide(t, payment)
		prober := jobs.Principal{ID: "prober-ambiguous@example.com", Roles: []string{"decide"}}
		var okRes, selfRes, probeRes jobs.ApproveResult
		calls, release := lineUpWrites(t, e, g, context.Background(),
			approveCall(e, alice, ok, &okRes), approveCall(e, decider, self, &selfRes),
			approveCall(e, prober, other, &probeRes))
		a.arm(1) // the holder's transaction runs first; then the batch
		release()
		for _, c := range calls {
			c.wait(t)
		}
		for id, want := range map[string]string{self.ID: "decision,refusal:SELF_APPROVAL",
			principalChain(prober): "refusal:NO_STANDING", ok.ID: "decision,approval"} {
			if got := kinds(e.events(t, id)); got != want {
				t.Errorf("evidence of %s = %s, want %s", id, got, want)
			}
		}
		if calls[0].err == nil && okRes.AlreadyApproved {
			t.Errorf("the approver's first approval was answered as a repeat: %+v", okRes.Approval)
		}
	})
}

// TestBatchFailureSpendsOutsiderAllowanceTwice: a caller without standing spends one of
// its allowance of such calls per call (writeCall.limited: "once per call, whatever the
// attempts"). When its batch fails because of a batch-mate, the call runs again alone,
// and refuseOutsider takes a second token: a prober with an allowance of one is answered
// RESOURCE_EXHAUSTED for its first call instead of NOT_FOUND, and its attempt is not
// recorded, all because of another caller's failure.
func TestBatchFailureSpendsOutsiderAllowanceTwice(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		g := &gatedStore{Store: st}
		fc := &fakeClock{now: t0}
		e := buildWith(t, g, testPolicy, fc.Now, fc, jobs.Config{Batch: bigBatches.batch,
			Outsiders: jobs.OutsiderLimit{Every: time.Hour, Burst: 1}})
		mate, target := e.decide(t, payment), e.decide(t, payment)
		prober := jobs.Principal{ID: "prober-allowance@example.com", Roles: []string{"decide"}}
		var mateRes, probeRes jobs.ApproveResult
		calls, release := lineUpWrites(t, e, g, context.Background(),
			approveCall(e, alice, mate, &mateRes), approveCall(e, prober, target, &probeRes))
		g.breakNext() // the batch fails at its commit; each call runs again alone
		release()
		wantNoErr(t, calls[0].wait(t).err)
		wantErr(t, calls[1].wait(t).err, jobs.CodeNotFound, jobs.ReasonNotFound)
		e.wantKinds(t, principalChain(prober), "refusal:NO_STANDING")
	})
}

// lateCtx reports a deadline a little before its Done closes, as a context whose timer
// has not fired yet does at its deadline: timers of equal deadlines fire in no set order.
type lateCtx struct {
	context.Context
	deadline time.Time
}

func (c lateCtx) Deadline() (time.Time, bool) { return c.deadline, true }

// TestBatchDeadlineNeverAcknowledgesUncommitted: a batch's context has the latest of its
// callers' deadlines. When that deadline ends the batch's transaction, runWrites answers
// each caller with its own context's error (errCallersGone) — but a caller whose context
// has not yet ended (its own timer fires a moment later) gets that error as nil: the
// Approve is answered success, with an empty result, while nothing committed.
func TestBatchDeadlineNeverAcknowledgesUncommitted(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		g := &gatedStore{Store: st}
		e := bigBatches.env(t, g, testPolicy)
		j := e.decide(t, payment)
		inner, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ctx := lateCtx{Context: inner, deadline: time.Now().Add(500 * time.Millisecond)}
		var res jobs.ApproveResult
		calls, release := lineUpWrites(t, e, g, ctx, approveCall(e, alice, j, &res))
		_, open := g.holdNext() // the batch's transaction waits past its deadline
		defer open()
		release()
		err := calls[0].wait(t).err
		got := e.job(t, j.ID)
		if err == nil && got.Status != store.StatusApproved {
			t.Fatalf("Approve answered success (%+v) but the job is %s, evidence %s",
				res.Job.Status, got.Status, kinds(e.events(t, j.ID)))
		}
	})
}
