package storetest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
)

func testSnapshotPutGet(t *testing.T, s store.Store) {
	want := snapshot(1, base)
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		if _, err := tx.GetSnapshot(ctx, want.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetSnapshot before Put: %v, want ErrNotFound", err)
		}
		created, err := tx.PutSnapshot(ctx, want)
		if err != nil || !created {
			t.Fatalf("PutSnapshot: created=%v err=%v, want true, nil", created, err)
		}
		return nil
	})
	// Identical content again, by someone else later: a no-op that keeps the first.
	again := want
	again.CreatedAt, again.CreatedBy = want.CreatedAt.Add(time.Hour), "someone-else"
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		created, err := tx.PutSnapshot(ctx, again)
		if err != nil || created {
			t.Errorf("PutSnapshot again: created=%v err=%v, want false, nil", created, err)
		}
		return nil
	})
	// Other content under the same id (a digest prefix collision) is not a repeat.
	clash := snapshot(2, base)
	clash.ID = want.ID
	err := s.ReadWrite(t.Context(), func(ctx context.Context, tx store.Tx) error {
		_, err := tx.PutSnapshot(ctx, clash)
		return err
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("PutSnapshot of other content under an existing id: %v, want ErrConflict", err)
	}
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		got, err := tx.GetSnapshot(ctx, want.ID)
		if err != nil {
			return err
		}
		sameSnapshot(t, got, want)
		if err := got.Verify(); err != nil {
			t.Errorf("stored snapshot does not verify: %v", err)
		}
		return nil
	})
}

func testSnapshotList(t *testing.T, s store.Store) {
	// Two share a creation time, so the id breaks the tie.
	var all []snapshots.Snapshot
	for i, at := range []int64{base + 20, base + 10, base + 10, base + 30, base} {
		all = append(all, snapshot(i+1, at))
	}
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for _, sn := range all {
			if _, err := tx.PutSnapshot(ctx, sn); err != nil {
				return err
			}
		}
		return nil
	})
	want := slices.Clone(all)
	slices.SortFunc(want, func(a, b snapshots.Snapshot) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		got, err := tx.ListSnapshots(ctx, "", 0)
		if err != nil {
			return err
		}
		if len(got) != len(want) {
			t.Fatalf("ListSnapshots: %d snapshots, want %d", len(got), len(want))
		}
		for i := range want {
			sameSnapshot(t, got[i], want[i])
		}
		var paged []snapshots.Snapshot
		after := ""
		for range len(want) + 1 {
			page, err := tx.ListSnapshots(ctx, after, 2)
			if err != nil {
				return err
			}
			if len(page) > 2 {
				t.Fatalf("page of %d, limit 2", len(page))
			}
			if len(page) == 0 {
				break
			}
			paged = append(paged, page...)
			after = page[len(page)-1].ID
		}
		if g, w := snapIDs(paged), snapIDs(want); !slices.Equal(g, w) {
			t.Errorf("paged ListSnapshots: %v, want %v", g, w)
		}
		if _, err := tx.ListSnapshots(ctx, "snap_missing", 2); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("ListSnapshots after an unknown id: %v, want ErrNotFound", err)
		}
		return nil
	})
}

func snapIDs(ss []snapshots.Snapshot) []string {
	ids := make([]string, len(ss))
	for i, s := range ss {
		ids[i] = s.ID
	}
	return ids
}

func testSnapshotActive(t *testing.T, s store.Store) {
	ctx := t.Context()
	if _, err := s.ActiveSnapshot(ctx); !errors.Is(err, snapshots.ErrNoActive) {
		t.Errorf("ActiveSnapshot on an empty store: %v, want ErrNoActive", err)
	}
	// The same read measures the database's clock, even with nothing active. The
	// database runs on this machine: its clock is this one's.
	cr, ok := s.(store.ClockReader)
	if !ok {
		t.Fatal("the store does not read the database's clock")
	}
	sample, ok := cr.LastClockSample()
	if off := sample.DB.Sub(sample.Sent); !ok || off < -time.Second || sample.DB.After(sample.Received.Add(time.Second)) {
		t.Errorf("clock sample %+v (%v off): want the database's time between sent and received", sample, off)
	}
	a, b := snapshot(1, base), snapshot(2, base+1)
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		if _, err := tx.ActiveSnapshotID(ctx); !errors.Is(err, snapshots.ErrNoActive) {
			t.Errorf("ActiveSnapshotID on an empty store: %v, want ErrNoActive", err)
		}
		for _, sn := range []snapshots.Snapshot{a, b} {
			if _, err := tx.PutSnapshot(ctx, sn); err != nil {
				return err
			}
		}
		return tx.SetActiveSnapshot(ctx, a.ID, time.UnixMicro(base+5), "alice")
	})
	err := s.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		return tx.SetActiveSnapshot(ctx, "snap_missing", time.UnixMicro(base+6), "alice")
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetActiveSnapshot to an unknown id: %v, want ErrNotFound", err)
	}
	for _, want := range []snapshots.Snapshot{a, b, a} { // rolling back is activating again
		write(t, s, func(ctx context.Context, tx store.Tx) error {
			return tx.SetActiveSnapshot(ctx, want.ID, time.UnixMicro(base+7), "bob")
		})
		read(t, s, func(ctx context.Context, tx store.Tx) error {
			id, err := tx.ActiveSnapshotID(ctx)
			if err != nil || id != want.ID {
				t.Errorf("ActiveSnapshotID: %q, %v; want %q", id, err, want.ID)
			}
			return nil
		})
		got, err := s.ActiveSnapshot(ctx)
		if err != nil {
			t.Fatalf("ActiveSnapshot: %v", err)
		}
		sameSnapshot(t, got, want)
	}
}
