package audit_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/agate-pdp/agate/audit"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/clockguard"
)

const maxSkew = 500 * time.Millisecond

// replica is one replica on a shared store, with its own clock offset.
type replica struct {
	svc    *jobs.Service
	sealer *audit.Sealer
	clock  *clockguard.Monitor
}

func newReplica(t *testing.T, st store.Store, offset time.Duration, guard bool) *replica {
	t.Helper()
	now := func() time.Time { return time.Now().Add(offset) }
	m, err := clockguard.New(clockguard.Config{Source: st.(store.ClockReader), MaxSkew: maxSkew, Clock: now,
		Refresh: func(ctx context.Context) error { _, err := st.ActiveSnapshot(ctx); return err }, Stale: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	_ = m.Check(t.Context())
	w := st
	if guard {
		w = m.Guard(st)
	}
	cache, _ := snapshots.NewCache(8)
	r := &replica{clock: m}
	tracker := snapshots.NewTracker(st, cache, nil)
	if _, err := tracker.Refresh(t.Context()); err != nil && !errors.Is(err, snapshots.ErrNoActive) {
		t.Fatal(err)
	}
	if r.svc, err = jobs.New(jobs.Config{Store: w, Tracker: tracker, Cache: cache, Clock: now}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.svc.Close)
	if r.sealer, err = audit.NewSealer(audit.SealerConfig{Store: w, Key: testKey, Clock: now, MaxClockSkew: maxSkew}); err != nil {
		t.Fatal(err)
	}
	return r
}

// load decides and approves jobs on each replica until ctx ends, while every replica
// seals; it returns how many jobs each replica wrote.
func load(ctx context.Context, t *testing.T, rs []*replica) []int {
	t.Helper()
	written := make([]int, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				id := fmt.Sprintf("r%d-%d", i, n)
				res, err := r.svc.Decide(ctx, decider, payment(id))
				if err != nil {
					continue
				}
				written[i]++
				_, _ = r.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: id, JobHash: res.Job.Hash})
			}
		})
		wg.Go(func() {
			for ctx.Err() == nil {
				_, _ = r.sealer.SealOnce(ctx)
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	return written
}

// TestSkewedReplicaUnderLoad: replicas whose clocks differ within the bound write and
// seal side by side with no false alarm and nothing left unsealed; one whose clock is
// five minutes fast writes and seals nothing. Without the guard, that replica's
// checkpoints would leave the others' events unsealed, reported as inserted.
func TestSkewedReplicaUnderLoad(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.activate(t, policyV1)
		rs := []*replica{newReplica(t, e.st, 0, true), newReplica(t, e.st, 400*time.Millisecond, true),
			newReplica(t, e.st, -400*time.Millisecond, true), newReplica(t, e.st, 5*time.Minute, true)}
		for i, r := range rs[:3] {
			if err := r.clock.Err(); err != nil {
				t.Fatalf("replica %d within the bound: %v", i, err)
			}
		}
		if err := rs[3].clock.Err(); !errors.Is(err, store.ErrClockSkew) {
			t.Fatalf("replica five minutes fast: %v", err)
		}
		lctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		written := load(lctx, t, rs)
		cancel()
		if written[0] == 0 || written[1] == 0 || written[2] == 0 || written[3] != 0 {
			t.Fatalf("jobs written per replica: %v; want the skewed one at 0 and the others above", written)
		}
		_, err := rs[3].svc.Decide(ctx, decider, payment("late"))
		if je, ok := jobs.AsError(err); !ok || je.Code != jobs.CodeUnavailable || je.Reason != jobs.ReasonClockSkew {
			t.Errorf("Decide on the skewed replica: %v, want UNAVAILABLE CLOCK_SKEW", err)
		}
		must(rs[1].svc.Decide(ctx, decider, payment("last")))(t)
		if _, err := rs[3].sealer.SealOnce(ctx); !errors.Is(err, store.ErrClockSkew) {
			t.Errorf("the skewed replica sealed: %v", err)
		}
		for _, r := range rs[:3] {
			for range 5 {
				if _, err := r.sealer.SealOnce(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		unsealed := 0
		_ = e.st.Read(ctx, func(ctx context.Context, tx store.Tx) error {
			heads, err := tx.UnsealedHeads(ctx, 0)
			unsealed = len(heads)
			return err
		})
		if unsealed != 0 {
			t.Errorf("%d chains left unsealed", unsealed)
		}
		trust := audit.Trust{Keys: []ed25519.PublicKey{testKey.Public().(ed25519.PublicKey)}, MaxClockSkew: maxSkew}
		// Verify as if long after: every honest event is older than the sealing window.
		a, err := audit.New(audit.Config{Store: e.st, PublicKey: trust.Keys[0],
			Clock: func() time.Time { return time.Now().Add(time.Hour) }})
		if err != nil {
			t.Fatal(err)
		}
		if rep := must(a.VerifyWith(ctx, audit.Window{}, trust))(t); !rep.OK() {
			t.Errorf("verification after skewed load: %+v", rep.Problems[:min(5, len(rep.Problems))])
		}

		// The same fast replica without the guard seals in the future: a correct
		// replica's next events fall behind its window and are reported inserted.
		rogue := newReplica(t, e.st, 5*time.Minute, false)
		if cp := must(rogue.sealer.SealOnce(ctx))(t); cp == nil {
			res := must(rs[0].svc.Decide(ctx, decider, payment("before-rogue")))(t)
			_ = res
			must(rogue.sealer.SealOnce(ctx))(t)
		}
		must(rs[0].svc.Decide(ctx, decider, payment("after-rogue")))(t)
		must(rs[0].sealer.SealOnce(ctx))(t)
		if rep := must(a.VerifyWith(ctx, audit.Window{}, trust))(t); rep.OK() {
			t.Error("an unguarded skewed sealer left no trace: the test cannot tell the guard's worth")
		}
	})
}
