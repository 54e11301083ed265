package jobs_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/storetest"
)

// replicas builds one replica per store, all on one fake clock, each putting policy
// (the first activates it, the others find it active and load it).
func replicas(t *testing.T, stores []store.Store, policy string) (*fakeClock, []*env) {
	t.Helper()
	fc := &fakeClock{now: t0}
	out := make([]*env, len(stores))
	for i, st := range stores {
		out[i] = build(t, st, policy, fc.Now, fc, jobs.Batch{})
	}
	return fc, out
}

// runExpiry runs every replica's sweeper until the test ends; the sweepers have
// stopped before the stores close.
func runExpiry(t *testing.T, rs []*env, every time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Go(func() { r.svc.RunExpiry(ctx, every) })
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// waitStatus polls until every job has status want, or fails after a deadline.
func waitStatus(t *testing.T, e *env, want store.Status, ids ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, id := range ids {
		for e.job(t, id).Status != want {
			if time.Now().After(deadline) {
				t.Fatalf("job %s is %s after 5 s, want %s", id, e.job(t, id).Status, want)
			}
			time.Sleep(5 * time.Millisecond) // polling the store, not waiting for time to pass
		}
	}
}

// TestExpiryOnTime: pending jobs past their ttl become expired with one expiry event by
// Agate's expiry principal, although nobody touches them, while three replicas on one
// database sweep; a job approved a moment before its deadline and a job not yet due
// are left alone.
func TestExpiryOnTime(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackendReplicas(t, 3, func(t *testing.T, stores []store.Store) {
		t.Parallel()
		fc, rs := replicas(t, stores, testPolicy)
		var due []string
		for range 5 {
			due = append(due, rs[0].decide(t, payment).ID)
		}
		approved := rs[0].decide(t, payment)
		fc.Advance(time.Hour)
		later := rs[1].decide(t, payment) // due an hour after the others
		runExpiry(t, rs, 2*time.Millisecond)

		fc.Advance(23*time.Hour - time.Millisecond) // 1 ms before the first deadline
		if _, err := rs[2].svc.Approve(context.Background(), alice,
			jobs.ApproveRequest{JobID: approved.ID, JobHash: approved.Hash}); err != nil {
			t.Fatalf("Approve just before the deadline: %v", err)
		}
		for _, id := range due {
			if s := rs[0].job(t, id).Status; s != store.StatusPendingApproval {
				t.Fatalf("job %s is %s before its deadline", id, s)
			}
		}
		fc.Advance(time.Millisecond) // the deadline: expires_at <= now
		waitStatus(t, rs[1], store.StatusExpired, due...)
		deadline := fc.Now().UnixMicro()

		// Every sweeper has had its chance at each job; sweep again on all of them at
		// once, as the next ticks do, and nothing more is written.
		sweepAll(t, rs, 0)
		for _, id := range due {
			evs := rs[0].wantKinds(t, id, "decision,expiry")
			ex := evs[1]
			if ex.Principal != jobs.ExpiryPrincipal || ex.At != deadline || ex.Status != string(store.StatusExpired) {
				t.Errorf("expiry event of %s: principal %q at %d status %s, want %s at %d expired",
					id, ex.Principal, ex.At, ex.Status, jobs.ExpiryPrincipal, deadline)
			}
		}
		if s := rs[0].job(t, approved.ID).Status; s != store.StatusApproved {
			t.Errorf("job approved before its deadline is %s, want approved", s)
		}
		rs[0].wantKinds(t, approved.ID, "decision,approval")
		if s := rs[0].job(t, later.ID).Status; s != store.StatusPendingApproval {
			t.Errorf("job not yet due is %s, want pending_approval", s)
		}
		fc.Advance(time.Hour)
		waitStatus(t, rs[0], store.StatusExpired, later.ID)
		rs[2].wantKinds(t, later.ID, "decision,expiry")
	})
}

// sweepAll runs ExpireDue on every replica at once and checks how many jobs they
// expired between them.
func sweepAll(t *testing.T, rs []*env, want int) {
	t.Helper()
	var mu sync.Mutex
	total := 0
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Go(func() {
			<-start
			n, err := r.svc.ExpireDue(context.Background())
			if err != nil {
				t.Errorf("ExpireDue: %v", err)
			}
			mu.Lock()
			total += n
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	if total != want {
		t.Errorf("replicas expired %d jobs between them, want %d", total, want)
	}
}

// TestExpiryRacingReplicas: replicas sweeping the same due jobs at the same moment
// expire each exactly once; the losers find them expired and write nothing.
func TestExpiryRacingReplicas(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackendReplicas(t, 3, func(t *testing.T, stores []store.Store) {
		t.Parallel()
		fc, rs := replicas(t, stores, testPolicy)
		var ids []string
		for i := range 3 {
			for range 40 { // more than one batch each round
				ids = append(ids, rs[i].decide(t, payment).ID)
			}
		}
		fc.Advance(25 * time.Hour)
		sweepAll(t, rs, len(ids))
		sweepAll(t, rs, 0)
		for _, id := range ids {
			rs[0].wantKinds(t, id, "decision,expiry")
		}
	})
}

// lyingStore's due list names every job it is asked about, due or not, as a stale read
// or a compromised query would.
type lyingStore struct {
	store.Store
	ids []string
}

func (s *lyingStore) ReadWrite(ctx context.Context, fn func(context.Context, store.Tx) error) error {
	return s.Store.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error { return fn(ctx, lyingTx{tx, s.ids}) })
}

type lyingTx struct {
	store.Tx
	ids []string
}

func (t lyingTx) DueJobs(ctx context.Context, s store.Status, now int64, limit int) ([]string, error) {
	if t.ids == nil {
		return t.Tx.DueJobs(ctx, s, now, limit)
	}
	return slices.Clone(t.ids), nil
}

// TestExpiryRechecksLockedJob: the sweeper decides on the locked row, not on the due
// list: jobs that are approved, not yet due, or already expired stay as they are and
// get no event.
func TestExpiryRechecksLockedJob(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		ls := &lyingStore{Store: st}
		e := newEnv(t, ls, testPolicy)
		approved := e.approved(t)
		allowed := e.decide(t, report)
		gone := e.decide(t, payment)
		e.clock.Advance(25 * time.Hour)
		if _, err := e.svc.ExpireDue(context.Background()); err != nil {
			t.Fatal(err)
		}
		e.wantKinds(t, gone.ID, "decision,expiry")
		pending := e.decide(t, payment)
		ls.ids = []string{approved.ID, pending.ID, allowed.ID, gone.ID, "job-missing"}
		n, err := e.svc.ExpireDue(context.Background())
		if err != nil || n != 0 {
			t.Fatalf("ExpireDue over jobs that are not due = %d, %v; want 0", n, err)
		}
		e.wantKinds(t, approved.ID, "decision,approval")
		e.wantKinds(t, pending.ID, "decision")
		e.wantKinds(t, allowed.ID, "decision")
		e.wantKinds(t, gone.ID, "decision,expiry")
		if s := e.job(t, pending.ID).Status; s != store.StatusPendingApproval {
			t.Errorf("pending job not yet due is %s", s)
		}
	})
}
