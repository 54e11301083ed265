package jobs_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/store"
)

// The concurrency tests run real goroutines against real databases. Clients retry
// LOCK_BUSY as real clients would (bounded, see retryBusy); the counts hold after.

// parallel runs f(0..n-1) in n goroutines released together, and waits for them.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f(i)
		}()
	}
	close(start)
	wg.Wait()
}

func countKind(evs []evidence.Event, k evidence.Kind, repeat bool) int {
	n := 0
	for _, ev := range evs {
		if ev.Kind == k && ev.Repeat == repeat {
			n++
		}
	}
	return n
}

func TestConcurrentApprove(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, st store.Store, m commitMode) {
		t.Parallel()
		e := m.realEnv(t, st, testPolicy)
		j := e.decide(t, payment)
		// Ten approvers, five calls each: one approval completes the quorum, its
		// approver's other calls are its own repeats (already_approved), and every other
		// approver's call is ALREADY_APPROVED, recorded as a refusal.
		const n, people = 50, 10
		var busy, transitions, repeats, late atomic.Int64
		errs := make([]error, n)
		var winner atomic.Int64
		winner.Store(-1)
		parallel(n, func(i int) {
			p := jobs.Principal{ID: fmt.Sprintf("approver-%02d", i%people), Roles: []string{"finance-approver"}}
			errs[i] = retryBusy(&busy, func() error {
				res, err := e.svc.Approve(context.Background(), p, jobs.ApproveRequest{JobID: j.ID, JobHash: j.Hash})
				switch ee, _ := jobs.AsError(err); {
				case err == nil && res.AlreadyApproved:
					repeats.Add(1)
				case err == nil:
					transitions.Add(1)
					winner.Store(int64(i % people))
				case ee != nil && ee.Reason == jobs.ReasonAlreadyApproved:
					late.Add(1)
					return nil
				}
				return err
			})
		})
		for i, err := range errs {
			if err != nil {
				t.Fatalf("approver %d: %v", i, err)
			}
		}
		if transitions.Load() != 1 || repeats.Load() != n/people-1 || late.Load() != n-n/people {
			t.Fatalf("%d transitions, %d already_approved, %d ALREADY_APPROVED; want 1, %d and %d",
				transitions.Load(), repeats.Load(), late.Load(), n/people-1, n-n/people)
		}
		evs := e.events(t, j.ID)
		if first, again := countKind(evs, evidence.KindApproval, false), countKind(evs, evidence.KindApproval, true); first != 1 || again != n/people-1 {
			t.Fatalf("approval events: %d first, %d repeats; want 1 and %d", first, again, n/people-1)
		}
		if got := countKind(evs, evidence.KindRefusal, false); got != n-n/people {
			t.Fatalf("%d refusal events, want %d", got, n-n/people)
		}
		if got := countKind(evs, evidence.KindConflict, false); int64(got) != busy.Load() {
			t.Fatalf("%d lock-busy answers but %d conflict events", busy.Load(), got)
		}
		v, err := e.svc.GetJob(context.Background(), auditor, j.ID)
		wantNoErr(t, err)
		if v.Job.Status != store.StatusApproved || len(v.Approvals) != 1 || v.Approvals[0].Approver != v.Job.ApprovedBy {
			t.Fatalf("job %+v approvals %+v", v.Job, v.Approvals)
		}
		t.Logf("50 concurrent Approve: %d LOCK_BUSY retries", busy.Load())
	})
}

func TestApproveRacingReject(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, st store.Store, m commitMode) {
		t.Parallel()
		e := m.realEnv(t, st, testPolicy)
		ctx := context.Background()
		var busy atomic.Int64
		approvedWins, rejectedWins := 0, 0
		for range 10 {
			j := e.decide(t, payment)
			var aRes jobs.ApproveResult
			var rRes jobs.RejectResult
			var aErr, rErr error
			parallel(2, func(i int) {
				if i == 0 {
					aErr = retryBusy(&busy, func() (err error) {
						aRes, err = e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: j.ID, JobHash: j.Hash})
						return err
					})
				} else {
					rErr = retryBusy(&busy, func() (err error) {
						rRes, err = e.svc.Reject(ctx, bob, jobs.RejectRequest{JobID: j.ID, JobHash: j.Hash, Reason: "veto"})
						return err
					})
				}
			})
			final := e.job(t, j.ID)
			switch {
			case aErr == nil && !aRes.AlreadyApproved:
				approvedWins++
				wantErr(t, rErr, jobs.CodeFailedPrecondition, jobs.ReasonAlreadyApproved)
				if final.Status != store.StatusApproved {
					t.Fatalf("approve won but the job is %s", final.Status)
				}
			case rErr == nil && !rRes.AlreadyRejected:
				rejectedWins++
				wantErr(t, aErr, jobs.CodeFailedPrecondition, jobs.ReasonAlreadyRejected)
				if final.Status != store.StatusRejected {
					t.Fatalf("reject won but the job is %s", final.Status)
				}
			default:
				t.Fatalf("nobody won: approve %v %+v, reject %v %+v", aErr, aRes, rErr, rRes)
			}
			evs := e.events(t, j.ID)
			if n := countKind(evs, evidence.KindApproval, false) + countKind(evs, evidence.KindRejection, false); n != 1 {
				t.Fatalf("%d transitions recorded: %s", n, kinds(evs))
			}
		}
		t.Logf("approve won %d, reject won %d, %d LOCK_BUSY retries", approvedWins, rejectedWins, busy.Load())
	})
}

func TestConcurrentPublish(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, st store.Store, m commitMode) {
		t.Parallel()
		e := m.realEnv(t, st, testPolicy)
		j := e.approved(t)
		const n = 20
		var busy, published, repeats atomic.Int64
		attempts := make([]int64, n)
		parallel(n, func(i int) {
			err := retryBusy(&busy, func() error {
				res, err := e.svc.Publish(context.Background(), dispatcher, jobs.PublishRequest{JobID: j.ID, JobHash: j.Hash})
				if err == nil {
					attempts[i] = res.Job.Attempt
					if res.AlreadyPublished {
						repeats.Add(1)
					} else {
						published.Add(1)
					}
				}
				return err
			})
			if err != nil {
				t.Errorf("publisher %d: %v", i, err)
			}
		})
		if published.Load() != 1 || repeats.Load() != n-1 {
			t.Fatalf("%d published, %d already_published; want 1 and %d", published.Load(), repeats.Load(), n-1)
		}
		for i, a := range attempts {
			if a != 1 {
				t.Fatalf("publisher %d saw attempt %d", i, a)
			}
		}
		if got := countKind(e.events(t, j.ID), evidence.KindPublish, false); got != 1 {
			t.Fatalf("%d publish events", got)
		}
	})
}

func TestConcurrentDecide(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, st store.Store, m commitMode) {
		t.Parallel()
		e := m.realEnv(t, st, testPolicy)
		req := payment.request(newID("racing"))
		const n = 20
		var busy, first, repeats atomic.Int64
		parallel(n, func(i int) {
			err := retryBusy(&busy, func() error {
				res, err := e.svc.Decide(context.Background(), decider, req)
				if err == nil {
					if res.AlreadyDecided {
						repeats.Add(1)
					} else {
						first.Add(1)
					}
				}
				return err
			})
			if err != nil {
				t.Errorf("decider %d: %v", i, err)
			}
		})
		if first.Load() != 1 || repeats.Load() != n-1 {
			t.Fatalf("%d decisions, %d already_decided", first.Load(), repeats.Load())
		}
		if got := countKind(e.events(t, req.JobID), evidence.KindDecision, false); got != 1 {
			t.Fatalf("%d decision events", got)
		}
	})
}

// TestActivationDuringApprovals activates a new snapshot while approvals of jobs decided
// under the old one run: each approval either commits under the snapshot active when it
// commits, or is SNAPSHOT_DRIFT.
func TestActivationDuringApprovals(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, st store.Store, m commitMode) {
		t.Parallel()
		ctx := context.Background()
		e := m.realEnv(t, st, testPolicy)
		a := e.snap
		put, err := e.svc.PutPolicy(ctx, admin, []byte(driftPolicy), false)
		wantNoErr(t, err)
		b := put.Snapshot.ID

		const perGroup = 10
		var pending []store.Job
		for range 3 * perGroup {
			pending = append(pending, e.decide(t, payment))
		}
		type result struct {
			start time.Time
			err   error
		}
		results := make([]result, len(pending))
		var busy atomic.Int64
		var done atomic.Int64
		halfway := make(chan struct{})
		approve := func(i int) {
			results[i].start = time.Now()
			results[i].err = retryBusy(&busy, func() error {
				_, err := e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: pending[i].ID, JobHash: pending[i].Hash})
				return err
			})
			if done.Add(1) == perGroup/2 {
				close(halfway)
			}
		}
		var wg sync.WaitGroup
		run := func(from int) {
			for i := from; i < from+perGroup; i++ {
				wg.Add(1)
				go func() { defer wg.Done(); approve(i) }()
			}
		}
		run(0) // group 1 runs first; activation starts once half of it is done
		<-halfway
		run(perGroup) // group 2 races the activation
		act, err := e.svc.ActivateSnapshot(ctx, admin, b, false)
		activated := time.Now()
		wantNoErr(t, err)
		if !act.Activated {
			t.Fatal("not activated")
		}
		run(2 * perGroup) // group 3 starts after the activation committed
		wg.Wait()

		committed, drifted := 0, 0
		for i, r := range results {
			j := e.job(t, pending[i].ID)
			evs := e.events(t, j.ID)
			switch r.err {
			case nil:
				committed++
				if j.Status != store.StatusApproved || j.ApprovedAt >= activated.UnixMicro() || r.start.After(activated) {
					t.Fatalf("job %d committed after the activation: %+v", i, j)
				}
			default:
				drifted++
				wantErr(t, r.err, jobs.CodeAborted, jobs.ReasonSnapshotDrift)
				if j.Status != store.StatusConflict {
					t.Fatalf("job %d drifted but is %s", i, j.Status)
				}
			}
			for _, ev := range evs {
				switch {
				case ev.Kind == evidence.KindApproval && (ev.PolicySnapshot != a || ev.At >= activated.UnixMicro()):
					t.Fatalf("job %d: approval under %s at %d, after %s was activated at %d", i, ev.PolicySnapshot, ev.At, b, activated.UnixMicro())
				case ev.Kind == evidence.KindConflict && ev.Conflict == jobs.ReasonSnapshotDrift && (ev.PolicySnapshot != b || ev.PreviousSnapshot != a):
					t.Fatalf("job %d: drift event %+v", i, ev)
				}
			}
			if i >= 2*perGroup && r.err == nil {
				t.Fatalf("job %d: approved although its approval started after the activation", i)
			}
		}
		if committed < perGroup/2 || drifted < perGroup {
			t.Fatalf("%d committed, %d drifted", committed, drifted)
		}
		t.Logf("%d approvals committed before the activation, %d drifted, %d LOCK_BUSY retries", committed, drifted, busy.Load())
	})
}

func TestTamperedPublish(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, st store.Store, m commitMode) {
		t.Parallel()
		e := m.realEnv(t, st, testPolicy)
		j := e.approved(t)
		tampered := payment.request(j.ID)
		tampered.Payload = []byte(`{"amount": 1250.5, "currency": "EUR", "invoice": "INV-6666"}`)
		res, err := e.svc.Evaluate(context.Background(), tampered, "")
		wantNoErr(t, err)
		const n = 10
		var busy atomic.Int64
		parallel(n, func(int) {
			err := retryBusy(&busy, func() error {
				_, err := e.svc.Publish(context.Background(), dispatcher, jobs.PublishRequest{JobID: j.ID, JobHash: res.JobHash})
				return err
			})
			if ee, ok := jobs.AsError(err); !ok || ee.Reason != jobs.ReasonJobHashMismatch {
				t.Errorf("tampered publish: %v", err)
			}
		})
		if got := e.job(t, j.ID); got.Status != store.StatusApproved || got.Attempt != 0 || got.PublishedAt != 0 {
			t.Fatalf("a tampered job was published: %+v", got)
		}
		evs := e.events(t, j.ID)
		if countKind(evs, evidence.KindPublish, false) != 0 || countKind(evs, evidence.KindConflict, false) != n+int(busy.Load()) {
			t.Fatalf("evidence %s", kinds(evs))
		}
		pub, err := e.svc.Publish(context.Background(), dispatcher, jobs.PublishRequest{JobID: j.ID, JobHash: j.Hash})
		wantNoErr(t, err)
		if pub.Job.Status != store.StatusApprovedAndPublished || pub.Job.Attempt != 1 {
			t.Fatalf("the genuine job: %+v", pub.Job)
		}
	})
}
