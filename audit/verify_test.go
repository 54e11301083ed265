package audit_test

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/agate-pdp/agate/audit"
	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
)

// want is one expected problem: "kind job #seq event" or "kind checkpoint #seq".
func problemKey(p audit.Problem) string {
	if p.CheckpointID != "" || p.JobID == "" {
		return fmt.Sprintf("%s checkpoint #%d", p.Kind, p.Seq)
	}
	return fmt.Sprintf("%s %s #%d %s", p.Kind, p.JobID, p.Seq, p.EventID)
}

// forge stores e as it is, bypassing the lifecycle, as someone with write access to the
// database could.
func (e *env) forge(t *testing.T, ev evidence.Event) {
	t.Helper()
	h, err := ev.ComputeHash()
	if err != nil {
		t.Fatal(err)
	}
	ev.Hash = h
	err = e.st.ReadWrite(context.Background(), func(ctx context.Context, tx store.Tx) error {
		return tx.AppendEvent(ctx, ev)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func eventAt(t *testing.T, events []evidence.Event, seq int64) evidence.Event {
	t.Helper()
	i := slices.IndexFunc(events, func(e evidence.Event) bool { return e.Seq == seq })
	if i < 0 {
		t.Fatalf("no event #%d", seq)
	}
	return events[i]
}

// TestVerifyDetectsTampering tampers with the rows of a sealed store in each way and
// expects verification to name exactly the rows concerned. The sealer keeps running
// after the tampering, as it would in production, and must not vouch for any of it.
func TestVerifyDetectsTampering(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		tamper func(t *testing.T, e *env) []string // returns the expected problems
	}{
		{"modified", func(t *testing.T, e *env) []string {
			ev := eventAt(t, e.events(t, "pay-1"), 3)
			e.raw(t, `UPDATE evidence SET reason = 'approved twice, honest' WHERE event_id = $1`, ev.EventID)
			return []string{"modified pay-1 #3 " + ev.EventID}
		}},
		{"modified with a recomputed hash", func(t *testing.T, e *env) []string {
			ev := eventAt(t, e.events(t, "pay-2"), 4) // the head: no successor links to it
			ev.Reason = "nothing happened"
			h, err := ev.ComputeHash()
			if err != nil {
				t.Fatal(err)
			}
			e.raw(t, `UPDATE evidence SET reason = $1, hash = $2 WHERE event_id = $3`, ev.Reason, h, ev.EventID)
			return []string{"modified pay-2 #4 " + ev.EventID}
		}},
		{"deleted", func(t *testing.T, e *env) []string {
			e.raw(t, `DELETE FROM evidence WHERE job_id = 'pay-1' AND seq = 2`)
			return []string{"deleted pay-1 #2 "}
		}},
		{"deleted head", func(t *testing.T, e *env) []string {
			e.raw(t, `DELETE FROM evidence WHERE job_id = 'allow-1' AND seq = 3`)
			return []string{"deleted allow-1 #3 "}
		}},
		{"deleted chain", func(t *testing.T, e *env) []string {
			e.raw(t, `DELETE FROM evidence WHERE job_id = 'deny-1'`)
			return []string{"deleted deny-1 #1 "}
		}},
		{"inserted fork", func(t *testing.T, e *env) []string {
			events := e.events(t, "xfer-1")
			ev := eventAt(t, events, 2)
			ev.EventID, ev.Seq, ev.ApprovedBy = ulid.Make().String(), 5, "mallory@example.com"
			e.forge(t, ev) // links to #1, which already has a successor
			return []string{"inserted xfer-1 #5 " + ev.EventID}
		}},
		{"inserted chain", func(t *testing.T, e *env) []string {
			ev := eventAt(t, e.events(t, "allow-1"), 1)
			ev.EventID, ev.JobID, ev.At = ulid.Make().String(), "ghost-1", t0.Add(-time.Hour).UnixMicro()
			e.forge(t, ev) // a well-formed chain of its own, backdated
			return []string{"inserted ghost-1 #1 " + ev.EventID}
		}},
		{"reordered", func(t *testing.T, e *env) []string {
			events := e.events(t, "pay-1")
			two, three := eventAt(t, events, 2), eventAt(t, events, 3)
			e.raw(t, `UPDATE evidence SET seq = 100 WHERE event_id = $1`, two.EventID)
			e.raw(t, `UPDATE evidence SET seq = 2 WHERE event_id = $1`, three.EventID)
			e.raw(t, `UPDATE evidence SET seq = 3 WHERE event_id = $1`, two.EventID)
			return []string{"reordered pay-1 #2 " + three.EventID, "reordered pay-1 #3 " + two.EventID}
		}},
		{"checkpoint heads modified", func(t *testing.T, e *env) []string {
			e.raw(t, `UPDATE checkpoint_heads SET hash = 'sha256:00' WHERE job_id = 'deny-1'`)
			return []string{"modified checkpoint #1"}
		}},
		{"checkpoint signature replaced", func(t *testing.T, e *env) []string {
			e.raw(t, `UPDATE checkpoints SET signature = $1 WHERE seq = 1`, make([]byte, 64))
			return []string{"bad_signature checkpoint #1"}
		}},
		{"checkpoint deleted", func(t *testing.T, e *env) []string {
			for _, job := range []string{"pay-3", "pay-4"} { // two more checkpoints
				e.clock.Advance(time.Second)
				must(e.svc.Cancel(context.Background(), operator, jobs.CancelRequest{JobID: job, Reason: "withdrawn"}))(t)
				if cp := e.seal(t); cp == nil {
					t.Fatal("nothing sealed")
				}
			}
			e.raw(t, `DELETE FROM checkpoint_heads WHERE checkpoint_seq = 2`)
			e.raw(t, `DELETE FROM checkpoints WHERE seq = 2`)
			return []string{"deleted checkpoint #2"}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			forEachBackend(t, func(t *testing.T, e *env) {
				runScenario(t, e)
				e.seal(t)
				want := tc.tamper(t, e)
				e.clock.Advance(2 * audit.SealLookback) // long after: every honest event is sealed
				e.seal(t)
				rep := must(e.audit.Verify(context.Background(), audit.Window{}))(t)
				var got []string
				for _, p := range rep.Problems {
					got = append(got, problemKey(p))
				}
				slices.Sort(want)
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Errorf("problems:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
					for _, p := range rep.Problems {
						t.Logf("%+v", p)
					}
				}
			})
		})
	}
}

// Sealers on several replicas race while writers append: the checkpoints form one valid
// chain, every chain ends up sealed at its head, and no head is sealed twice.
func TestConcurrentSealers(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		// Writers and sealers on the real clock: the sealer trusts replicas' clocks to
		// agree within SealLookback.
		svc, err := jobs.New(jobs.Config{Store: e.st, Tracker: snapshots.NewTracker(e.st, must(snapshots.NewCache(2))(t), nil)})
		if err != nil {
			t.Fatal(err)
		}
		must(svc.PutPolicy(ctx, owner, []byte(policyV1), true))(t)
		const sealers, writers, perWriter = 3, 4, 15
		runCtx, stop := context.WithCancel(ctx)
		var running sync.WaitGroup
		for range sealers {
			s, err := audit.NewSealer(audit.SealerConfig{Store: e.st, Key: testKey, Interval: 5 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			running.Go(func() { s.Run(runCtx) })
		}
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range perWriter {
					id := fmt.Sprintf("job-%d-%d", w, i)
					if _, err := svc.Decide(ctx, decider, payment(id)); err != nil {
						t.Errorf("Decide: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		stop()
		running.Wait()
		final, err := audit.NewSealer(audit.SealerConfig{Store: e.st, Key: testKey})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if _, err := final.SealOnce(ctx); err != nil {
				t.Fatal(err)
			}
		}
		var cps []store.Checkpoint
		var unsealed []evidence.Head
		err = e.st.Read(ctx, func(ctx context.Context, tx store.Tx) error {
			var err error
			if cps, err = tx.ListCheckpoints(ctx, 0, 0); err != nil {
				return err
			}
			unsealed, err = tx.UnsealedHeads(ctx, 0)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(unsealed) != 0 {
			t.Errorf("%d chains left unsealed: %v", len(unsealed), unsealed)
		}
		sealed := map[evidence.Head]int64{}
		for _, c := range cps {
			for _, h := range c.Heads {
				if prev, dup := sealed[h]; dup {
					t.Errorf("%s #%d sealed by checkpoints %d and %d", h.JobID, h.Seq, prev, c.Seq)
				}
				sealed[h] = c.Seq
			}
		}
		if len(sealed) != writers*perWriter+1 {
			t.Errorf("%d heads sealed, want %d", len(sealed), writers*perWriter+1)
		}
		slices.SortFunc(cps, func(a, b store.Checkpoint) int { return cmp.Compare(a.Seq, b.Seq) })
		rep := must(e.audit.Verify(ctx, audit.Window{}))(t)
		if !rep.OK() || rep.CheckpointsVerified != int64(len(cps)) {
			t.Errorf("verify = %+v", rep)
		}
		t.Logf("%d checkpoints", len(cps))
	})
}
