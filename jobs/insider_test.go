package jobs_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/agate-pdp/agate/canonical"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/storetest"
)

// rewrittenStore reads one job's row as someone who can write rows rewrote it: the
// payload and, consistently, the job_hash column, on every read path.
type rewrittenStore struct {
	store.Store
	mu      sync.Mutex
	payload map[string][]byte
	hash    map[string]string
}

func (s *rewrittenStore) rewrite(t *testing.T, j store.Job, payload string) string {
	t.Helper()
	h, err := canonical.JobHash(j.Topic, j.Actor, payment.labels, []byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.payload[j.ID], s.hash[j.ID] = []byte(payload), h
	return h
}

func (s *rewrittenStore) fix(j store.Job) store.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.payload[j.ID]
	if !ok {
		return j
	}
	j.Payload, j.Hash = p, s.hash[j.ID]
	return j
}

func (s *rewrittenStore) Read(ctx context.Context, fn func(context.Context, store.Tx) error) error {
	return s.Store.Read(ctx, func(ctx context.Context, tx store.Tx) error { return fn(ctx, rewrittenTx{tx, s}) })
}

func (s *rewrittenStore) ReadWrite(ctx context.Context, fn func(context.Context, store.Tx) error) error {
	return s.Store.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error { return fn(ctx, rewrittenTx{tx, s}) })
}

type rewrittenTx struct {
	store.Tx
	s *rewrittenStore
}

func (t rewrittenTx) GetJob(ctx context.Context, id string, forUpdate bool) (store.Job, error) {
	j, err := t.Tx.GetJob(ctx, id, forUpdate)
	if err == nil {
		j = t.s.fix(j)
	}
	return j, err
}

func (t rewrittenTx) GetJobs(ctx context.Context, ids []string, forUpdate bool) ([]store.Job, error) {
	js, err := t.Tx.GetJobs(ctx, ids, forUpdate)
	for i := range js {
		js[i] = t.s.fix(js[i])
	}
	return js, err
}

func (t rewrittenTx) ListJobs(ctx context.Context, q store.JobQuery) ([]store.Job, error) {
	js, err := t.Tx.ListJobs(ctx, q)
	for i := range js {
		js[i] = t.s.fix(js[i])
	}
	return js, err
}

// TestInsiderRewrittenPayloadAndHashAreRefused (the attack, refused): someone who can write rows swaps an
// approved job's payload and rewrites its job_hash column to match. Publish re-hashes
// the stored job, finds it consistent with the (rewritten) stored hash, and hands the
// swapped payload to the worker, although the job's sealed decision and approval
// events name the hash that was approved. The dispatcher takes the hash where a
// dispatcher finds it: ListReplayable.
func TestInsiderRewrittenPayloadAndHashAreRefused(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, m commitMode) {
		ctx := context.Background()
		rs := &rewrittenStore{Store: storetest.OpenSQLite(t), payload: map[string][]byte{}, hash: map[string]string{}}
		e := m.env(t, rs, testPolicy)
		j := e.approved(t)
		const evil = `{"amount": 999999, "currency": "EUR", "invoice": "INV-6666"}`
		forged := rs.rewrite(t, j, evil)

		list, _, err := e.svc.ListReplayable(ctx, dispatcher, jobs.ReplayableQuery{})
		wantNoErr(t, err)
		presented := ""
		for _, v := range list {
			if v.ID == j.ID {
				presented = v.Hash
			}
		}
		if presented != forged {
			t.Fatalf("ListReplayable shows hash %q, want the rewritten %q", presented, forged)
		}
		res, err := e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: j.ID, JobHash: presented})
		if err == nil {
			t.Fatalf("published a payload that was never approved: %s (approved hash %s, handed out %s)",
				res.Job.Payload, j.Hash, res.Job.Hash)
		}
		wantErr(t, err, jobs.CodeDataLoss, jobs.ReasonStoredJobTampered)
	})
}

// TestInsiderRefusalsWithStandingAreEvidence (the attack, refused): a caller with standing on a job is
// refused, and nothing of it reaches the job's chain. A dispatcher trying to publish a
// job that was denied, is still pending or was rejected, an approver approving a
// cancelled job, the submitter cancelling a published one, a stale outcome: each is a
// refusal of a caller with standing, and every such refusal is evidence.
func TestInsiderRefusalsWithStandingAreEvidence(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, m commitMode) {
		ctx := context.Background()
		e := m.env(t, storetest.OpenSQLite(t), testPolicy)
		cancelled := e.decide(t, payment)
		_, err := e.svc.Cancel(ctx, decider, jobs.CancelRequest{JobID: cancelled.ID, Reason: "withdrawn"})
		wantNoErr(t, err)
		rejected := e.decide(t, payment)
		_, err = e.svc.Reject(ctx, bob, jobs.RejectRequest{JobID: rejected.ID, JobHash: rejected.Hash, Reason: "no"})
		wantNoErr(t, err)
		published := e.publishedJob(t, report)

		for _, c := range []struct {
			name string
			job  store.Job
			call func(j store.Job) error
		}{
			{"dispatcher publishes a denied job", e.decide(t, export), func(j store.Job) error {
				_, err := e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: j.ID, JobHash: j.Hash})
				return err
			}},
			{"dispatcher publishes a pending job", e.decide(t, payment), func(j store.Job) error {
				_, err := e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: j.ID, JobHash: j.Hash})
				return err
			}},
			{"dispatcher publishes a rejected job", rejected, func(j store.Job) error {
				_, err := e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: j.ID, JobHash: j.Hash})
				return err
			}},
			{"approver approves a cancelled job", cancelled, func(j store.Job) error {
				_, err := e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: j.ID, JobHash: j.Hash})
				return err
			}},
			{"submitter cancels a published job", published, func(j store.Job) error {
				_, err := e.svc.Cancel(ctx, decider, jobs.CancelRequest{JobID: j.ID, Reason: "too late"})
				return err
			}},
			{"dispatcher reports a stale attempt", published, func(j store.Job) error {
				_, err := e.svc.ReportOutcome(ctx, dispatcher, jobs.OutcomeRequest{JobID: j.ID, Attempt: 7, Succeeded: true})
				return err
			}},
		} {
			before := len(e.events(t, c.job.ID))
			err := c.call(c.job)
			if _, ok := jobs.AsError(err); !ok {
				t.Errorf("%s: err = %v, want a refusal", c.name, err)
				continue
			}
			if after := len(e.events(t, c.job.ID)); after == before {
				t.Errorf("%s: refused (%v) with nothing on the job's chain", c.name, err)
			}
		}
	})
}

// TestInsiderLookalikeActorCannotApproveItself (the attack, refused): the canonical form folds case and width but
// not look-alikes, and Decide accepts an actor ending in an invisible character that is
// neither white space nor a control or format character. alice@example.com approves a
// job whose actor renders as alice@example.com.
func TestInsiderLookalikeActorCannotApproveItself(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, m commitMode) {
		ctx := context.Background()
		e := m.env(t, storetest.OpenSQLite(t), testPolicy)
		for name, actor := range map[string]string{
			"trailing braille blank U+2800": alice.ID + "\u2800",
			"Cyrillic a U+0430":             "\u0430lice@example.com",
			"Cyrillic a in the domain":      "alice@ex\u0430mple.com",
		} {
			r := payment.request(newID("lookalike"))
			r.Actor = actor
			res, err := e.svc.Decide(ctx, decider, r)
			if err != nil {
				continue // refused at Decide: held
			}
			j := res.Job
			_, err = e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: j.ID, JobHash: j.Hash})
			if err == nil {
				t.Errorf("%s: %s approved a job whose actor is %q", name, alice.ID, actor)
			}
		}
	})
}

// TestInsiderTakenIDDecidesAreRateLimited (the attack, refused): a Decide of another submitter's job id is
// recorded on the caller's own chain, as the README says of calls without standing,
// but it is not counted against the per-principal allowance: a submitter can write
// without bound, and probe which ids exist, as fast as it likes.
func TestInsiderTakenIDDecidesAreRateLimited(t *testing.T) {
	t.Parallel()
	st := storetest.OpenSQLite(t)
	fc := &fakeClock{now: t0}
	cache, err := snapshots.NewCache(2)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := jobs.New(jobs.Config{Store: st, Tracker: snapshots.NewTracker(st, cache, nil), Cache: cache,
		Clock: fc.Now, Outsiders: jobs.OutsiderLimit{Burst: 3, Every: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	if _, err := svc.PutPolicy(context.Background(), admin, []byte(testPolicy), true); err != nil {
		t.Fatal(err)
	}
	e := &env{st: st, svc: svc, clock: fc}
	j := e.decide(t, payment)
	limited := 0
	for range 10 {
		_, err := svc.Decide(context.Background(), mallory, payment.request(j.ID))
		if ee, ok := jobs.AsError(err); ok && ee.Reason == jobs.ReasonRateLimited {
			limited++
		}
	}
	if n := len(e.events(t, principalChain(mallory))); limited == 0 || n > 3 {
		t.Fatalf("10 Decides of a taken id with an allowance of 3: %d rate-limited, %d events on the caller's chain", limited, n)
	}
}

// TestInsiderMissesDoNotLockOutTheDispatcher (the attack, refused): the allowance for calls without standing is
// checked before standing, so a principal that asked about 30 job ids that do not exist
// (stale ids from a queue another service fills, say) is refused RESOURCE_EXHAUSTED on
// the jobs it has standing on too: the dispatcher stops publishing approved jobs.
func TestInsiderMissesDoNotLockOutTheDispatcher(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, m commitMode) {
		ctx := context.Background()
		e := m.env(t, storetest.OpenSQLite(t), testPolicy)
		j := e.approved(t)
		for i := range 30 {
			_, err := e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: fmt.Sprintf("stale-%d", i), JobHash: j.Hash})
			wantErr(t, err, jobs.CodeNotFound, jobs.ReasonNotFound)
		}
		if _, err := e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: j.ID, JobHash: j.Hash}); err != nil {
			t.Fatalf("the dispatcher cannot publish an approved job after 30 misses: %v", err)
		}
	})
}

// eachMode runs fn once per commit mode, as parallel subtests.
func eachMode(t *testing.T, fn func(t *testing.T, m commitMode)) {
	for _, m := range []commitMode{unbatched, batched} {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			fn(t, m)
		})
	}
}
