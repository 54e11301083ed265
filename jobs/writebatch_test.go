package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/storetest"
)

// bgCall is one lifecycle call started in the background.
type bgCall struct {
	name string
	err  error
	done chan struct{}
}

func startCall(ctx context.Context, name string, fn func(ctx context.Context) error) *bgCall {
	c := &bgCall{name: name, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.err = fn(ctx)
	}()
	return c
}

func (c *bgCall) wait(t *testing.T) *bgCall {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not return", c.name)
	}
	return c
}

// otherHash is a well-formed job hash of no job.
var otherHash = "sha256:" + strings.Repeat("0", 64)

// lifecycle is a lifecycle call to line up.
type lifecycle struct {
	name string
	fn   func(ctx context.Context) error
}

// lineUpWrites holds the next write transaction with a lifecycle call of its own (a
// Cancel), then queues calls in order behind it, each once the one before is queued, so
// that they form the next batch in that order, calls on one job excepted. release lets
// the held transaction, and then the batch, run.
func lineUpWrites(t *testing.T, e *env, g *gatedStore, ctx context.Context, calls ...lifecycle) (started []*bgCall, release func()) {
	t.Helper()
	holder := e.decide(t, payment)
	arrived, open := g.holdNext()
	t.Cleanup(open)
	first := startCall(context.Background(), "holder", func(ctx context.Context) error {
		_, err := e.svc.Cancel(ctx, decider, jobs.CancelRequest{JobID: holder.ID, Reason: "holds the door"})
		return err
	})
	select {
	case <-arrived:
	case <-first.done:
		t.Fatalf("the holding Cancel returned: %v", first.err)
	}
	for i, c := range calls {
		started = append(started, startCall(ctx, c.name, c.fn))
		waitFor(t, func() bool { return jobs.QueuedWrites(e.svc) == i+1 })
	}
	return started, func() {
		open()
		wantNoErr(t, first.wait(t).err)
	}
}

func approveCall(e *env, p jobs.Principal, j store.Job, out *jobs.ApproveResult) lifecycle {
	return lifecycle{"Approve " + j.ID + " by " + p.ID, func(ctx context.Context) (err error) {
		*out, err = e.svc.Approve(ctx, p, jobs.ApproveRequest{JobID: j.ID, JobHash: j.Hash, Reason: "ok"})
		return err
	}}
}

func publishCall(e *env, id, hash string, out *jobs.PublishResult) lifecycle {
	return lifecycle{"Publish " + id, func(ctx context.Context) (err error) {
		*out, err = e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: id, JobHash: hash})
		return err
	}}
}

func cancelCall(e *env, j store.Job) lifecycle {
	return lifecycle{"Cancel " + j.ID, func(ctx context.Context) error {
		_, err := e.svc.Cancel(ctx, decider, jobs.CancelRequest{JobID: j.ID, Reason: "withdrawn"})
		return err
	}}
}

// TestWriteBatchMixedOutcomes: one batch of lifecycle writes on different jobs, each
// with its own outcome, answered and recorded as if each had its own transaction.
func TestWriteBatchMixedOutcomes(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		g := &gatedStore{Store: st}
		e := bigBatches.env(t, g, testPolicy)
		ok, self, outsider, pendingPub := e.decide(t, payment), e.decide(t, payment), e.decide(t, payment), e.decide(t, payment)
		rejected, cancelled := e.decide(t, payment), e.decide(t, payment)
		mismatch, toPublish := e.approved(t), e.approved(t)
		reported := e.publishedJob(t, payment)
		missing := newID("missing")
		outsiderBefore := len(e.events(t, principalChain(mallory)))
		dispatcherBefore := len(e.events(t, principalChain(dispatcher)))

		var okRes, selfRes, outsiderRes jobs.ApproveResult
		var mismatchRes, pubRes, pendingRes, missingRes jobs.PublishResult
		var rejRes jobs.RejectResult
		var outRes jobs.OutcomeResult
		before := g.writes.Load()
		calls, release := lineUpWrites(t, e, g, context.Background(),
			approveCall(e, alice, ok, &okRes),
			approveCall(e, decider, self, &selfRes),         // its own submitter: SELF_APPROVAL, on the job's chain
			approveCall(e, mallory, outsider, &outsiderRes), // no standing: on mallory's chain
			publishCall(e, mismatch.ID, otherHash, &mismatchRes),
			publishCall(e, toPublish.ID, toPublish.Hash, &pubRes),
			publishCall(e, pendingPub.ID, pendingPub.Hash, &pendingRes), // QUORUM_NOT_MET: recorded after the batch
			publishCall(e, missing, ok.Hash, &missingRes),
			lifecycle{"Reject", func(ctx context.Context) (err error) {
				rejRes, err = e.svc.Reject(ctx, bob, jobs.RejectRequest{JobID: rejected.ID, JobHash: rejected.Hash, Reason: "no"})
				return err
			}},
			lifecycle{"ReportOutcome", func(ctx context.Context) (err error) {
				outRes, err = e.svc.ReportOutcome(ctx, dispatcher, jobs.OutcomeRequest{JobID: reported.ID, Attempt: 1, Succeeded: true})
				return err
			}},
			cancelCall(e, cancelled),
		)
		release()
		for _, c := range calls {
			c.wait(t)
		}
		wantNoErr(t, calls[0].err)
		if okRes.Job.Status != store.StatusApproved || okRes.Approval.Approver != alice.ID || len(okRes.Approvals) != 1 {
			t.Fatalf("approve: %+v", okRes)
		}
		wantErr(t, calls[1].err, jobs.CodePermissionDenied, jobs.ReasonSelfApproval)
		wantErr(t, calls[2].err, jobs.CodeNotFound, jobs.ReasonNotFound)
		wantErr(t, calls[3].err, jobs.CodeAborted, jobs.ReasonJobHashMismatch)
		wantNoErr(t, calls[4].err)
		if pubRes.Job.Status != store.StatusApprovedAndPublished || pubRes.Job.Attempt != 1 || len(pubRes.Approvals) != 1 {
			t.Fatalf("publish: %+v", pubRes)
		}
		wantErr(t, calls[5].err, jobs.CodeFailedPrecondition, jobs.ReasonQuorumNotMet)
		wantErr(t, calls[6].err, jobs.CodeNotFound, jobs.ReasonNotFound)
		wantNoErr(t, calls[7].err)
		if rejRes.Job.Status != store.StatusRejected || rejRes.RejectedBy != bob.ID {
			t.Fatalf("reject: %+v", rejRes)
		}
		wantNoErr(t, calls[8].err)
		if outRes.Job.Status != store.StatusSucceeded {
			t.Fatalf("outcome: %+v", outRes)
		}
		wantNoErr(t, calls[9].err)

		for id, want := range map[string]store.Status{ok.ID: store.StatusApproved, self.ID: store.StatusPendingApproval,
			outsider.ID: store.StatusPendingApproval, mismatch.ID: store.StatusApproved, toPublish.ID: store.StatusApprovedAndPublished,
			pendingPub.ID: store.StatusPendingApproval, rejected.ID: store.StatusRejected, reported.ID: store.StatusSucceeded,
			cancelled.ID: store.StatusCancelled} {
			if got := e.job(t, id); got.Status != want {
				t.Errorf("%s is %s, want %s", id, got.Status, want)
			}
		}
		if got := e.job(t, ok.ID); !sameJob(got, okRes.Job) {
			t.Errorf("stored %+v\nanswered %+v", got, okRes.Job)
		}
		e.wantKinds(t, ok.ID, "decision,approval")
		e.wantKinds(t, self.ID, "decision,refusal:SELF_APPROVAL")
		e.wantKinds(t, outsider.ID, "decision")
		e.wantKinds(t, mismatch.ID, "decision,approval,conflict:JOB_HASH_MISMATCH")
		e.wantKinds(t, toPublish.ID, "decision,approval,publish")
		e.wantKinds(t, pendingPub.ID, "decision,refusal:QUORUM_NOT_MET")
		e.wantKinds(t, rejected.ID, "decision,rejection")
		e.wantKinds(t, reported.ID, "decision,approval,publish,outcome")
		e.wantKinds(t, cancelled.ID, "decision,cancel")
		if evs := e.events(t, principalChain(mallory)); len(evs) != outsiderBefore+1 || evs[len(evs)-1].Conflict != jobs.EvidenceNoStanding {
			t.Fatalf("mallory's chain: %s", kinds(evs))
		}
		if evs := e.events(t, principalChain(dispatcher)); len(evs) != dispatcherBefore+1 {
			t.Fatalf("the dispatcher's chain: %s", kinds(evs))
		}
		e.wantNotifications(t, ok.ID, "pending_approval@decision,approved@approval")
		e.wantNotifications(t, cancelled.ID, "pending_approval@decision,cancelled@cancel")
		// The holder's Decide and Cancel, the batch, and the refusal that rolled back
		// recorded on its own.
		if n := g.writes.Load() - before; n != 4 {
			t.Fatalf("%d write transactions, want 4", n)
		}
	})
}

// TestWriteBatchSameJobKeepsOrder: calls on one job never share a batch; each sees the
// one queued before it, as if they had run one after another.
func TestWriteBatchSameJobKeepsOrder(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		g := &gatedStore{Store: st}
		e := bigBatches.env(t, g, testPolicy)

		t.Run("approve twice, then publish", func(t *testing.T) {
			j, mate := e.decide(t, payment), e.decide(t, payment)
			var first, again, mateRes jobs.ApproveResult
			var pub jobs.PublishResult
			before := g.writes.Load()
			calls, release := lineUpWrites(t, e, g, context.Background(),
				approveCall(e, alice, j, &first), approveCall(e, alice, j, &again),
				approveCall(e, bob, mate, &mateRes), publishCall(e, j.ID, j.Hash, &pub))
			release()
			for _, c := range calls {
				wantNoErr(t, c.wait(t).err)
			}
			if first.AlreadyApproved || !again.AlreadyApproved || again.Approval.Approver != alice.ID {
				t.Fatalf("first %+v\nagain %+v", first, again)
			}
			if pub.AlreadyPublished || pub.Job.Status != store.StatusApprovedAndPublished {
				t.Fatalf("publish: %+v", pub)
			}
			e.wantKinds(t, j.ID, "decision,approval,approval+,publish")
			e.wantKinds(t, mate.ID, "decision,approval")
			// The holder's Decide and Cancel, then one batch per call on j: the mate
			// rides with the first.
			if n := g.writes.Load() - before; n != 5 {
				t.Fatalf("%d write transactions, want 5", n)
			}
		})

		t.Run("cancel before approve", func(t *testing.T) {
			j := e.decide(t, payment)
			var res jobs.ApproveResult
			calls, release := lineUpWrites(t, e, g, context.Background(), cancelCall(e, j), approveCall(e, alice, j, &res))
			release()
			wantNoErr(t, calls[0].wait(t).err)
			wantErr(t, calls[1].wait(t).err, jobs.CodeFailedPrecondition, jobs.ReasonNotPending)
			e.wantKinds(t, j.ID, "decision,cancel,refusal:NOT_PENDING")
		})

		t.Run("a quorum of two from one batch each", func(t *testing.T) {
			j := e.decide(t, transfer)
			var a, c jobs.ApproveResult
			calls, release := lineUpWrites(t, e, g, context.Background(), approveCall(e, alice, j, &a), approveCall(e, carol, j, &c))
			release()
			for _, call := range calls {
				wantNoErr(t, call.wait(t).err)
			}
			if a.Job.Status != store.StatusPendingApproval || c.Job.Status != store.StatusApproved || len(c.Approvals) != 2 {
				t.Fatalf("first %+v\nsecond %+v", a.Job, c)
			}
			e.wantKinds(t, j.ID, "decision,approval,approval")
		})
	})
}

// TestWriteBatchFailure: a batch that cannot commit leaves nothing behind, and each of
// its calls runs again alone with the answer it would have had.
func TestWriteBatchFailure(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		g := &gatedStore{Store: st}
		e := bigBatches.env(t, g, testPolicy)

		t.Run("a crash before the commit", func(t *testing.T) {
			ok, self := e.decide(t, payment), e.decide(t, payment)
			var okRes, selfRes jobs.ApproveResult
			before := g.writes.Load()
			calls, release := lineUpWrites(t, e, g, context.Background(),
				approveCall(e, alice, ok, &okRes), approveCall(e, decider, self, &selfRes))
			g.breakNext() // the batch runs all its statements, then its commit fails
			release()
			wantNoErr(t, calls[0].wait(t).err)
			wantErr(t, calls[1].wait(t).err, jobs.CodePermissionDenied, jobs.ReasonSelfApproval)
			if okRes.AlreadyApproved || okRes.Job.Status != store.StatusApproved {
				t.Fatalf("approve: %+v", okRes)
			}
			// Exactly one approval and one refusal: nothing of the broken batch remains.
			e.wantKinds(t, ok.ID, "decision,approval")
			e.wantKinds(t, self.ID, "decision,refusal:SELF_APPROVAL")
			e.wantNotifications(t, ok.ID, "pending_approval@decision,approved@approval")
			// The holder's Decide and Cancel, the broken batch, then one transaction per call.
			if n := g.writes.Load() - before; n != 5 {
				t.Fatalf("%d write transactions, want 5", n)
			}
		})

		t.Run("a bad job does not fail its batch-mates", func(t *testing.T) {
			bad, mate := e.decide(t, payment), e.decide(t, payment)
			err := st.ReadWrite(context.Background(), func(ctx context.Context, tx store.Tx) error {
				j, err := tx.GetJob(ctx, bad.ID, true)
				if err != nil {
					return err
				}
				j.TraceID = "" // every event about a job needs its trace id
				return tx.UpdateJob(ctx, j)
			})
			wantNoErr(t, err)
			var badRes, mateRes jobs.ApproveResult
			calls, release := lineUpWrites(t, e, g, context.Background(),
				approveCall(e, alice, bad, &badRes), approveCall(e, alice, mate, &mateRes))
			release()
			if err := calls[0].wait(t).err; err == nil {
				t.Fatal("the bad job was approved without its evidence")
			}
			wantNoErr(t, calls[1].wait(t).err)
			e.wantKinds(t, bad.ID, "decision")
			e.wantKinds(t, mate.ID, "decision,approval")
		})

		t.Run("a lost race reruns the batch", func(t *testing.T) {
			j := e.decide(t, payment)
			var res jobs.ApproveResult
			before := g.writes.Load()
			calls, release := lineUpWrites(t, e, g, context.Background(), approveCall(e, alice, j, &res))
			g.failNext(store.ErrConflict)
			release()
			wantNoErr(t, calls[0].wait(t).err)
			e.wantKinds(t, j.ID, "decision,approval")
			// The holder's Decide and Cancel, the batch that lost, the batch again.
			if n := g.writes.Load() - before; n != 4 {
				t.Fatalf("%d write transactions, want 4", n)
			}
		})
	})
}

// TestWriteBatchCallerLeaves: a caller that leaves while its batch waits is answered at
// once; its batch-mates' writes go on.
func TestWriteBatchCallerLeaves(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		g := &gatedStore{Store: st}
		e := bigBatches.env(t, g, testPolicy)
		gone, stays := e.decide(t, payment), e.decide(t, payment)
		ctx, cancel := context.WithCancel(context.Background())
		var goneRes, staysRes jobs.ApproveResult
		calls, release := lineUpWrites(t, e, g, context.Background(), approveCall(e, alice, stays, &staysRes))
		calls = append(calls, startCall(ctx, "gone", approveCall(e, alice, gone, &goneRes).fn))
		waitFor(t, func() bool { return jobs.QueuedWrites(e.svc) == 2 })
		cancel()
		if err := calls[1].wait(t).err; !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		release()
		wantNoErr(t, calls[0].wait(t).err)
		e.wantKinds(t, stays.ID, "decision,approval")
		// Its write was dropped before the batch ran: a retry approves.
		res, err := e.svc.Approve(context.Background(), alice, jobs.ApproveRequest{JobID: gone.ID, JobHash: gone.Hash})
		wantNoErr(t, err)
		if res.AlreadyApproved {
			t.Fatalf("%+v", res)
		}
	})
}

// TestWriteBatchConcurrentPipeline: many callers take jobs through Approve, Publish and
// ReportOutcome at once; every job ends succeeded with one event per step.
func TestWriteBatchConcurrentPipeline(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, st store.Store, m commitMode) {
		t.Parallel()
		g := &gatedStore{Store: st}
		e := m.realEnv(t, g, testPolicy)
		const n = 32
		ids := make([]string, n)
		before := g.writes.Load()
		// Ids that sort next to each other, as time-ordered ones do; a client retries
		// what is retryable, as clients are told to.
		prefix := newID("pipe")
		retry := func(name string, fn func() error) bool {
			for range 20 {
				err := fn()
				if e, ok := jobs.AsError(err); ok && e.Retryable() {
					continue
				}
				if err != nil {
					t.Errorf("%s: %v", name, err)
				}
				return err == nil
			}
			t.Errorf("%s: still busy after 20 attempts", name)
			return false
		}
		parallel(n, func(i int) {
			ctx := context.Background()
			var j store.Job
			if !retry("Decide", func() error {
				d, err := e.svc.Decide(ctx, decider, payment.request(fmt.Sprintf("%s-%04d", prefix, i)))
				j = d.Job
				return err
			}) {
				return
			}
			ids[i] = j.ID
			ok := retry("Approve", func() error {
				_, err := e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: j.ID, JobHash: j.Hash})
				return err
			}) && retry("Publish", func() error {
				_, err := e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: j.ID, JobHash: j.Hash})
				return err
			}) && retry("ReportOutcome", func() error {
				_, err := e.svc.ReportOutcome(ctx, dispatcher, jobs.OutcomeRequest{JobID: j.ID, Attempt: 1, Succeeded: true})
				return err
			})
			if !ok {
				ids[i] = ""
			}
		})
		for _, id := range ids {
			if id == "" {
				continue
			}
			if j := e.job(t, id); j.Status != store.StatusSucceeded {
				t.Fatalf("%s is %s", id, j.Status)
			}
			// A busy attempt leaves a LOCK_BUSY conflict; nothing else may come twice.
			evs := e.events(t, id)
			var steps []string
			for _, ev := range evs {
				if ev.Conflict != jobs.ReasonLockBusy {
					steps = append(steps, string(ev.Kind))
				}
			}
			if got := strings.Join(steps, ","); got != "decision,approval,publish,outcome" {
				t.Fatalf("evidence of %s: %s", id, kinds(evs))
			}
		}
		t.Logf("%s: %d calls in %d write transactions", m.name, 4*n, g.writes.Load()-before)
	})
}

// TestInsiderBatchedOutsiderLearnsNothing (the attack, refused): a caller without
// standing lines its probes up in the batches of someone else's calls, on the job they
// approve, on another job and on an id nobody used, hoping that sharing a transaction
// shows it something: an answer that differs between a job that exists and one that does
// not, or a trace on the jobs' chains. Each probe is answered NOT_FOUND alike, recorded
// on the prober's own chain only, and the approver's call goes through untouched.
func TestInsiderBatchedOutsiderLearnsNothing(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		g := &gatedStore{Store: st}
		e := bigBatches.env(t, g, testPolicy)
		target, other := e.decide(t, payment), e.decide(t, payment)
		missing := store.Job{ID: newID("nobody-used"), Hash: target.Hash}
		prober := jobs.Principal{ID: "prober@example.com", Roles: []string{"decide"}}
		var res, p1, p2, p3 jobs.ApproveResult
		calls, release := lineUpWrites(t, e, g, context.Background(),
			approveCall(e, prober, target, &p1), approveCall(e, alice, target, &res),
			approveCall(e, prober, missing, &p2), approveCall(e, prober, other, &p3))
		release()
		for _, c := range calls {
			c.wait(t)
		}
		wantNoErr(t, calls[1].err)
		if res.Job.Status != store.StatusApproved || len(res.Approvals) != 1 {
			t.Fatalf("the approver's call: %+v", res)
		}
		for _, i := range []int{0, 2, 3} {
			ee := wantErr(t, calls[i].err, jobs.CodeNotFound, jobs.ReasonNotFound)
			if len(ee.Meta) != 0 || ee.Field != "" {
				t.Fatalf("probe %d answered more than not found: %+v", i, ee)
			}
		}
		e.wantKinds(t, target.ID, "decision,approval")
		e.wantKinds(t, other.ID, "decision")
		evs := e.wantKinds(t, principalChain(prober), "refusal:NO_STANDING,refusal:NO_STANDING,refusal:NO_STANDING")
		for i, id := range []string{target.ID, missing.ID, other.ID} {
			if !strings.Contains(evs[i].Reason, "of job "+id+":") {
				t.Fatalf("refusal %d: %q, want it to name %s", i, evs[i].Reason, id)
			}
		}
	})
}
