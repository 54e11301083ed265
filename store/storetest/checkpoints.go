package storetest

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// checkpointKey signs the suite's checkpoints; any key will do.
var checkpointKey = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))

// appendChain appends n decision events at at, at+1, … to a chain and returns its head.
func appendChain(t *testing.T, s store.Store, job string, n int, at int64) evidence.Head {
	t.Helper()
	var head evidence.Head
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for i := range n {
			e := fullEvent(job, fmt.Sprintf("01JCP%s%03d%d", job, i, at), evidence.KindDecision, at+int64(i))
			if err := appendSealed(ctx, tx, &e); err != nil {
				return err
			}
			head = evidence.Head{JobID: job, Seq: e.Seq, Hash: e.Hash}
		}
		return nil
	})
	return head
}

// signed returns checkpoint seq after prev, sealing heads.
func signed(t *testing.T, seq int64, heads []evidence.Head, prev *store.Checkpoint) store.Checkpoint {
	t.Helper()
	var p *evidence.Checkpoint
	if prev != nil {
		p = &prev.Checkpoint
	}
	cp, err := evidence.NewCheckpoint(fmt.Sprintf("01JCHECKPOINT%013d", seq), base+seq, heads, p, checkpointKey)
	if err != nil {
		t.Fatal(err)
	}
	return store.Checkpoint{Seq: seq, Checkpoint: cp}
}

func unsealed(t *testing.T, s store.Store, since int64) (heads []evidence.Head) {
	t.Helper()
	read(t, s, func(ctx context.Context, tx store.Tx) (err error) {
		heads, err = tx.UnsealedHeads(ctx, since)
		return err
	})
	slices.SortFunc(heads, func(a, b evidence.Head) int { return cmp.Compare(a.JobID, b.JobID) })
	return heads
}

func testCheckpoints(t *testing.T, s store.Store) {
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		if _, err := tx.LastCheckpoint(ctx); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("LastCheckpoint of an empty store: %v, want ErrNotFound", err)
		}
		if cps, err := tx.ListCheckpoints(ctx, 0, 0); err != nil || len(cps) != 0 {
			t.Errorf("ListCheckpoints of an empty store: %v, %v", cps, err)
		}
		return nil
	})
	a := appendChain(t, s, "job_a", 3, base)
	b := appendChain(t, s, "job_b", 1, base+10)
	c := appendChain(t, s, "job_c", 2, base+20)
	if got, want := unsealed(t, s, 0), []evidence.Head{a, b, c}; !reflect.DeepEqual(got, want) {
		t.Fatalf("UnsealedHeads(0) = %v, want %v", got, want)
	}
	// A chain counts when any of its events is in the window, its head included.
	if got, want := unsealed(t, s, base+20), []evidence.Head{c}; !reflect.DeepEqual(got, want) {
		t.Errorf("UnsealedHeads(base+20) = %v, want %v", got, want)
	}

	cp1 := signed(t, 1, []evidence.Head{b, a}, nil)
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.AppendCheckpoint(ctx, cp1) })
	if got, want := unsealed(t, s, 0), []evidence.Head{c}; !reflect.DeepEqual(got, want) {
		t.Errorf("UnsealedHeads after sealing a and b = %v, want %v", got, want)
	}
	a2 := appendChain(t, s, "job_a", 1, base+30) // a grows past its sealed head
	if got, want := unsealed(t, s, 0), []evidence.Head{a2, c}; !reflect.DeepEqual(got, want) {
		t.Errorf("UnsealedHeads after a grew = %v, want %v", got, want)
	}
	cp2 := signed(t, 2, []evidence.Head{a2, c}, &cp1)
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		// The position is taken, whoever asks again: a concurrent sealer lost.
		again := signed(t, 1, []evidence.Head{c}, nil)
		again.ID = "01JOTHER"
		if err := tx.AppendCheckpoint(ctx, again); !errors.Is(err, store.ErrConflict) {
			t.Errorf("AppendCheckpoint at a taken seq: %v, want ErrConflict", err)
		}
		return nil
	})
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.AppendCheckpoint(ctx, cp2) })
	if got := unsealed(t, s, 0); len(got) != 0 {
		t.Errorf("UnsealedHeads after sealing everything = %v", got)
	}

	read(t, s, func(ctx context.Context, tx store.Tx) error {
		seqs, err := tx.SealedSeqs(ctx, []string{"job_a", "job_b", "job_c", "job_none"})
		if err != nil {
			return err
		}
		if want := map[string]int64{"job_a": 4, "job_b": 1, "job_c": 2}; !maps.Equal(seqs, want) {
			t.Errorf("SealedSeqs = %v, want %v", seqs, want)
		}
		last, err := tx.LastCheckpoint(ctx)
		if err != nil {
			return err
		}
		sameCheckpoint(t, last, cp2)
		all, err := tx.ListCheckpoints(ctx, 0, 0)
		if err != nil {
			return err
		}
		if len(all) != 2 {
			t.Fatalf("ListCheckpoints = %d checkpoints, want 2", len(all))
		}
		sameCheckpoint(t, all[0], cp1)
		sameCheckpoint(t, all[1], cp2)
		page, err := tx.ListCheckpoints(ctx, 1, 1)
		if err != nil || len(page) != 1 || page[0].Seq != 2 {
			t.Errorf("ListCheckpoints(after 1, limit 1) = %v, %v", page, err)
		}
		// What was stored still verifies: nothing was lost in the round trip.
		if err := evidence.VerifyCheckpoints(checkpointKey.Public().(ed25519.PublicKey),
			[]evidence.Checkpoint{all[0].Checkpoint, all[1].Checkpoint}); err != nil {
			t.Errorf("stored checkpoints do not verify: %v", err)
		}
		return nil
	})

	// A key rotation is stored with its checkpoint and read back whole.
	next := ed25519.NewKeyFromSeed(append([]byte{1}, make([]byte, ed25519.SeedSize-1)...))
	rot, err := evidence.NewRotation("01JROTATION", base+3, []evidence.Head{c}, &cp2.Checkpoint, checkpointKey, next)
	if err != nil {
		t.Fatal(err)
	}
	cp3 := store.Checkpoint{Seq: 3, Checkpoint: rot}
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.AppendCheckpoint(ctx, cp3) })
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		last, err := tx.LastCheckpoint(ctx)
		if err != nil {
			return err
		}
		sameCheckpoint(t, last, cp3)
		if err := last.Verify(next.Public().(ed25519.PublicKey), &cp2.Checkpoint); err != nil {
			t.Errorf("stored rotation does not verify: %v", err)
		}
		all, err := tx.ListCheckpoints(ctx, 0, 0)
		if err != nil || len(all) != 3 || all[1].Rotation != nil {
			t.Errorf("ListCheckpoints after a rotation = %d, %v; only the third carries it", len(all), err)
		}
		return nil
	})
}

func sameCheckpoint(t *testing.T, got, want store.Checkpoint) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("checkpoint round trip:\n got %+v\nwant %+v", got, want)
	}
}

// testCheckpointRace: sealers racing for one position; exactly one wins, whatever the
// backend's way of telling the other (a unique violation, or a serialization failure
// that the retry turns into one).
func testCheckpointRace(t *testing.T, s store.Store) {
	h := appendChain(t, s, "job_race", 1, base)
	const racers = 4
	errs := make([]error, racers)
	cps := make([]store.Checkpoint, racers)
	for i := range cps {
		cps[i] = signed(t, 1, []evidence.Head{h}, nil)
		cps[i].ID = fmt.Sprintf("01JRACER%d", i)
	}
	var wg sync.WaitGroup
	for i, cp := range cps {
		wg.Go(func() {
			errs[i] = s.ReadWrite(t.Context(), func(ctx context.Context, tx store.Tx) error {
				return tx.AppendCheckpoint(ctx, cp)
			})
		})
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("racer %d: %v, want nil or ErrConflict", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d racers stored checkpoint 1, want exactly 1", won)
	}
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		all, err := tx.ListCheckpoints(ctx, 0, 0)
		if err != nil || len(all) != 1 || len(all[0].Heads) != 1 {
			t.Errorf("after the race: %+v, %v; want one checkpoint with one head", all, err)
		}
		return nil
	})
}

func testChainEvents(t *testing.T, s store.Store) {
	var all []evidence.Event
	for _, job := range []string{"job_y", "job_x", "job_z"} {
		appendChain(t, s, job, 3, base)
	}
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		var err error
		all, err = tx.ListChainEvents(ctx, store.ChainQuery{})
		if err != nil {
			return err
		}
		if len(all) != 9 {
			t.Fatalf("ListChainEvents = %d events, want 9", len(all))
		}
		for i := 1; i < len(all); i++ {
			p, e := all[i-1], all[i]
			if p.JobID == e.JobID && e.Seq != p.Seq+1 || p.JobID != e.JobID && e.Seq != 1 {
				t.Errorf("event %d (%s #%d) after %s #%d: not in chain order", i, e.JobID, e.Seq, p.JobID, p.Seq)
			}
		}
		var paged []evidence.Event
		q := store.ChainQuery{Limit: 2}
		for range 10 {
			page, err := tx.ListChainEvents(ctx, q)
			if err != nil {
				return err
			}
			if len(page) == 0 {
				break
			}
			paged = append(paged, page...)
			q.AfterJobID, q.AfterSeq = page[len(page)-1].JobID, page[len(page)-1].Seq
		}
		sameEvents(t, paged, all)
		some, err := tx.ListChainEvents(ctx, store.ChainQuery{JobIDs: []string{"job_z", "job_x"}})
		if err != nil {
			return err
		}
		for _, e := range some {
			if e.JobID == "job_y" {
				t.Errorf("ListChainEvents(job_z, job_x) returned %s", e.JobID)
			}
		}
		if len(some) != 6 {
			t.Errorf("ListChainEvents(job_z, job_x) = %d events, want 6", len(some))
		}
		return nil
	})
}

// testEventsByTopic: the topic filter selects the events of jobs with that topic.
func testEventsByTopic(t *testing.T, s store.Store) {
	pay, exp := fullJob("job_pay", base), fullJob("job_exp", base)
	exp.Topic = "customer.data.export"
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for _, j := range []store.Job{pay, exp} {
			if err := tx.InsertJob(ctx, j); err != nil {
				return err
			}
		}
		return nil
	})
	appendChain(t, s, pay.ID, 2, base)
	appendChain(t, s, exp.ID, 3, base)
	appendChain(t, s, "job_orphan", 1, base) // no job row: never matches a topic
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		got, err := tx.QueryEvents(ctx, store.EventQuery{Topic: exp.Topic})
		if err != nil {
			return err
		}
		if len(got) != 3 || got[0].JobID != exp.ID {
			t.Errorf("QueryEvents(topic %s) = %v", exp.Topic, eventIDs(got))
		}
		jobs, err := tx.ListJobs(ctx, store.JobQuery{DecidedSince: base + 1})
		if err != nil || len(jobs) != 0 {
			t.Errorf("ListJobs(decided since after both) = %v, %v", jobIDs(jobs), err)
		}
		jobs, err = tx.ListJobs(ctx, store.JobQuery{DecidedSince: base})
		if err != nil || len(jobs) != 2 {
			t.Errorf("ListJobs(decided since base) = %v, %v", jobIDs(jobs), err)
		}
		return nil
	})
}
