package jobs_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/storetest"
)

// watchCfg polls fast and settles after a second of the fake clock.
var watchCfg = jobs.WatchConfig{Poll: 3 * time.Millisecond, Settle: time.Second, Heartbeat: 15 * time.Millisecond}

const watchSettle = time.Second

// watchReplicas is replicas with watchCfg.
func watchReplicas(t *testing.T, stores []store.Store) (*fakeClock, []*env) {
	t.Helper()
	fc := &fakeClock{now: t0}
	out := make([]*env, len(stores))
	for i, st := range stores {
		out[i] = buildWith(t, st, testPolicy, fc.Now, fc, jobs.Config{Watch: watchCfg})
	}
	return fc, out
}

// stream is one watch connection, run until stop.
type stream struct {
	mu      sync.Mutex
	items   []jobs.WatchItem
	changes []jobs.Change
	stop    context.CancelFunc
	done    chan error
}

func watch(t *testing.T, e *env, p jobs.Principal, cursor string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &stream{stop: cancel, done: make(chan error, 1)}
	go func() {
		s.done <- e.svc.Watch(ctx, p, cursor, func(it jobs.WatchItem) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.items = append(s.items, it)
			if it.Change != nil {
				s.changes = append(s.changes, *it.Change)
			}
			return nil
		})
	}()
	t.Cleanup(func() { s.close(t) })
	return s
}

// close ends the stream and returns the cursor of its last item.
func (s *stream) close(t *testing.T) string {
	t.Helper()
	s.stop()
	if err := <-s.done; err != nil {
		t.Errorf("Watch: %v", err)
	}
	s.done <- nil // a second close returns at once
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.items) == 0 {
		return ""
	}
	return s.items[len(s.items)-1].Cursor
}

// got returns the stream's changes as "job kind" strings, in order.
func (s *stream) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, c := range s.changes {
		out = append(out, c.Job.Job.ID+" "+string(c.Kind))
	}
	return out
}

// heartbeats counts the items without a change.
func (s *stream) heartbeats() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, it := range s.items {
		if it.Change == nil {
			n++
		}
	}
	return n
}

// waitFor polls until cond holds, or fails after a deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling the streams, not waiting for time to pass
	}
}

// holds reports whether got holds every one of want.
func holds(got, want []string) bool {
	for _, w := range want {
		if !slices.Contains(got, w) {
			return false
		}
	}
	return true
}

// noDuplicates fails when one connection delivered a transition twice.
func noDuplicates(t *testing.T, who string, s *stream) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, c := range s.changes {
		if seen[c.EventID] {
			t.Errorf("%s: event %s (%s %s) delivered twice on one connection", who, c.EventID, c.Job.Job.ID, c.Kind)
		}
		seen[c.EventID] = true
	}
}

// TestWatchAcrossReplicas: three replicas on one database, transitions made on each;
// an approver's, the dispatcher's and a submitter's streams see exactly the
// transitions they have standing on, the approver's across a reconnect to another
// replica in the middle, missing none and repeating none it had settled; a principal
// without standing sees heartbeats only.
func TestWatchAcrossReplicas(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackendReplicas(t, 3, func(t *testing.T, stores []store.Store) {
		t.Parallel()
		ctx := context.Background()
		fc, rs := watchReplicas(t, stores)
		eve := jobs.Principal{ID: "eve@example.com", Roles: []string{"hr-approver"}}
		aliceW := watch(t, rs[1], alice, "")
		dispW := watch(t, rs[2], dispatcher, "")
		subW := watch(t, rs[0], decider, "")
		eveW := watch(t, rs[1], eve, "")

		// Phase 1, before the approver's reconnect.
		p1 := rs[0].decide(t, payment)
		p2 := rs[1].decide(t, payment)
		p3 := rs[2].decide(t, payment)
		r1 := rs[1].decide(t, report) // allowed: no approver may see it
		fc.Advance(time.Millisecond)
		_, err := rs[2].svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: p1.ID, JobHash: p1.Hash})
		wantNoErr(t, err)
		// Not transitions: a refused self-approval, a repeat approval.
		_, err = rs[0].svc.Approve(ctx, jobs.Principal{ID: actor, Roles: []string{"finance-approver"}},
			jobs.ApproveRequest{JobID: p2.ID, JobHash: p2.Hash})
		wantErr(t, err, jobs.CodePermissionDenied, jobs.ReasonSelfApproval)
		_, err = rs[0].svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: p1.ID, JobHash: p1.Hash})
		wantNoErr(t, err)

		phase1 := []string{p1.ID + " decision", p2.ID + " decision", p3.ID + " decision", p1.ID + " approval"}
		waitUntil(t, "the approver's phase 1", func() bool { return holds(aliceW.got(), phase1) })
		// Settle phase 1, and let the approver's stream send a cursor past it.
		fc.Advance(2 * watchSettle)
		beats := aliceW.heartbeats()
		waitUntil(t, "a heartbeat", func() bool { return aliceW.heartbeats() > beats+1 })
		cursor := aliceW.close(t)
		noDuplicates(t, "approver before reconnect", aliceW)

		// Phase 2, while the approver is away, on every replica.
		_, err = rs[0].svc.Reject(ctx, bob, jobs.RejectRequest{JobID: p2.ID, JobHash: p2.Hash, Reason: "not this month"})
		wantNoErr(t, err)
		_, err = rs[1].svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: p1.ID, JobHash: p1.Hash})
		wantNoErr(t, err)
		_, err = rs[2].svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: r1.ID, JobHash: r1.Hash})
		wantNoErr(t, err)
		_, err = rs[2].svc.ReportOutcome(ctx, dispatcher, jobs.OutcomeRequest{JobID: p1.ID, Attempt: 1, Succeeded: true})
		wantNoErr(t, err)
		p4 := rs[2].decide(t, payment)
		_, err = rs[0].svc.Cancel(ctx, decider, jobs.CancelRequest{JobID: p4.ID, Reason: "duplicate"})
		wantNoErr(t, err)
		fc.Advance(25 * time.Hour)
		n, err := rs[1].svc.ExpireDue(ctx)
		if err != nil || n != 1 {
			t.Fatalf("ExpireDue = %d, %v; want p3 expired", n, err)
		}
		aliceW2 := watch(t, rs[2], alice, cursor)
		phase2 := []string{p2.ID + " rejection", p1.ID + " publish", p1.ID + " outcome",
			p4.ID + " decision", p4.ID + " cancel", p3.ID + " expiry"}
		waitUntil(t, "the approver's phase 2", func() bool { return holds(aliceW2.got(), phase2) })

		dispWant := []string{r1.ID + " decision", p1.ID + " approval", p1.ID + " publish", r1.ID + " publish", p1.ID + " outcome"}
		waitUntil(t, "the dispatcher's changes", func() bool { return holds(dispW.got(), dispWant) })
		subWant := append(append(slices.Clone(phase1), phase2...), r1.ID+" decision", r1.ID+" publish")
		waitUntil(t, "the submitter's changes", func() bool { return holds(subW.got(), subWant) })

		// Let everything settle and every stream poll past it, then compare exactly.
		fc.Advance(2 * watchSettle)
		for _, s := range []*stream{aliceW2, dispW, subW, eveW} {
			beats := s.heartbeats()
			waitUntil(t, "a heartbeat after everything settled", func() bool { return s.heartbeats() > beats+1 })
		}
		exactly(t, "approver after reconnect", aliceW2, phase2) // nothing of phase 1 again
		exactly(t, "dispatcher", dispW, dispWant)
		exactly(t, "submitter", subW, subWant)
		exactly(t, "principal without standing", eveW, nil)
		for who, s := range map[string]*stream{"approver": aliceW2, "dispatcher": dispW, "submitter": subW} {
			noDuplicates(t, who, s)
		}
	})
}

// exactly fails unless the stream delivered exactly the transitions of want, in any order.
func exactly(t *testing.T, who string, s *stream, want []string) {
	t.Helper()
	got := s.got()
	count := func(xs []string) map[string]int {
		m := map[string]int{}
		for _, x := range xs {
			m[x]++
		}
		return m
	}
	if g, w := count(got), count(want); !maps.Equal(g, w) {
		t.Errorf("%s saw %v, want %v", who, got, want)
	}
}

// TestWatchSendsWhatStandingAllows: the view each change carries is the job as the
// watcher may see it, and only jobs it has standing on; a watcher without roles, one
// holding a service role but not dispatch, and an approver of other rules see nothing.
func TestWatchSendsWhatStandingAllows(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		fc := &fakeClock{now: t0}
		e := buildWith(t, st, testPolicy, fc.Now, fc, jobs.Config{Watch: watchCfg})
		outsiders := []jobs.Principal{
			{ID: "noroles@example.com"},
			{ID: mallory.ID, Roles: mallory.Roles},                      // decide, submitted nothing
			{ID: "treasurer@example.com", Roles: []string{"treasurer"}}, // approves transfers only
			{ID: "policy@example.com", Roles: []string{"policy-admin"}},
		}
		var ws []*stream
		for _, p := range outsiders {
			ws = append(ws, watch(t, e, p, ""))
		}
		aud := watch(t, e, auditor, "")
		j := e.approved(t)
		waitUntil(t, "the auditor's changes", func() bool {
			return holds(aud.got(), []string{j.ID + " decision", j.ID + " approval"})
		})
		fc.Advance(2 * watchSettle)
		for _, s := range append(ws, aud) {
			beats := s.heartbeats()
			waitUntil(t, "a heartbeat", func() bool { return s.heartbeats() > beats+1 })
		}
		for i, s := range ws {
			exactly(t, fmt.Sprintf("outsider %s", outsiders[i].ID), s, nil)
		}
		aud.mu.Lock()
		c := aud.changes[len(aud.changes)-1]
		aud.mu.Unlock()
		if c.Job.Job.Hash != j.Hash || c.Status != store.StatusApproved || c.Principal != alice.ID || len(c.Job.Approvals) != 1 {
			t.Errorf("approval change = %+v", c)
		}
	})
}

// TestWatchCursor: a malformed cursor is refused naming the field; a cursor is a time
// and nothing else.
func TestWatchCursor(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.OpenSQLite(t), testPolicy)
	for _, c := range []string{"x", "!!", "dzE6LTE", "dzI6MTA", "dzE6"} { // junk, junk, w1:-1, w2:10
		err := e.svc.Watch(context.Background(), alice, c, func(jobs.WatchItem) error { return nil })
		wantField(t, err, "cursor")
	}
}

// TestWatchLateCommit: an event that commits after a later one was delivered, with an
// earlier time (another replica's clock is behind, or its transaction was slow), still
// arrives, because the cursor only passes events older than the settle time; and a
// stream far behind catches up across many small pages and polls, each transition once.
func TestWatchLateCommit(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackendReplicas(t, 2, func(t *testing.T, stores []store.Store) {
		t.Parallel()
		ahead := &fakeClock{now: t0.Add(watchSettle / 2)}
		behind := &fakeClock{now: t0}
		a := buildWith(t, stores[0], testPolicy, ahead.Now, ahead, jobs.Config{Watch: watchCfg})
		b := buildWith(t, stores[1], testPolicy, behind.Now, behind, jobs.Config{Watch: watchCfg})
		jobs.SetWatchPaging(a.svc, 2, 3)
		w := watch(t, a, auditor, "")
		first := a.decide(t, report)
		waitUntil(t, "the stream", func() bool { return holds(w.got(), []string{first.ID + " decision"}) })
		beats := w.heartbeats()
		waitUntil(t, "the stream", func() bool { return w.heartbeats() > beats+1 }) // polled past it
		late := b.decide(t, report)                                                 // at t0, before first's time
		var rest []string
		for range 15 {
			rest = append(rest, b.decide(t, report).ID+" decision")
		}
		want := append([]string{first.ID + " decision", late.ID + " decision"}, rest...)
		waitUntil(t, "the stream", func() bool { return holds(w.got(), want) })
		ahead.Advance(2 * watchSettle)
		beats = w.heartbeats()
		waitUntil(t, "the stream", func() bool { return w.heartbeats() > beats+1 })
		exactly(t, "auditor", w, want)
		noDuplicates(t, "auditor", w)

		// From the start, in pages of 2, 3 pages a poll: everything, once.
		again := watch(t, a, auditor, encodeAt(t0.Add(-time.Second)))
		waitUntil(t, "the stream", func() bool { return holds(again.got(), want) })
		beats = again.heartbeats()
		waitUntil(t, "the stream", func() bool { return again.heartbeats() > beats+1 })
		exactly(t, "auditor from the start", again, want)
	})
}

// encodeAt is the cursor that resumes at t.
func encodeAt(t time.Time) string {
	return base64.RawURLEncoding.EncodeToString([]byte("w1:" + strconv.FormatInt(t.UnixMicro(), 10)))
}
