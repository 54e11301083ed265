package storetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
)

// appendSealed seals e after the chain's head and appends it.
func appendSealed(ctx context.Context, tx store.Tx, e *evidence.Event) error {
	seq, hash, err := tx.ChainHead(ctx, e.JobID)
	if err != nil {
		return err
	}
	if err := e.Seal(seq, hash); err != nil {
		return err
	}
	return tx.AppendEvent(ctx, *e)
}

func testEventsChain(t *testing.T, s store.Store) {
	const job = "job_chain"
	var want []evidence.Event
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		seq, hash, err := tx.ChainHead(ctx, job)
		if err != nil || seq != 0 || hash != "" {
			t.Errorf("ChainHead of an empty chain: %d, %q, %v; want 0, \"\", nil", seq, hash, err)
		}
		full := fullEvent(job, "01J0000000000000000000000A", evidence.KindApproval, base)
		// The fewest fields a decision may have: what is absent must stay absent.
		minimal := evidence.Event{EventID: "01J0000000000000000000000B", JobID: job, TraceID: "trc",
			Kind: evidence.KindDecision, At: base + 1, Actor: "agent", Principal: "svc",
			Decision: "allow", RuleID: "default", Reason: "no rule matched",
			PolicySnapshot: "snap_a", JobHash: "sha256:aa", Status: "allowed"}
		for _, e := range []*evidence.Event{&full, &minimal} {
			if err := appendSealed(ctx, tx, e); err != nil {
				return err
			}
			want = append(want, *e)
		}
		return nil
	})
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		got, err := tx.ListEvents(ctx, job)
		if err != nil {
			return err
		}
		sameEvents(t, got, want)
		for i, e := range got {
			if h, err := e.ComputeHash(); err != nil || h != e.Hash {
				t.Errorf("event %d: stored hash %s, recomputed %s (%v)", i, e.Hash, h, err)
			}
		}
		seq, hash, err := tx.ChainHead(ctx, job)
		if err != nil || seq != 2 || hash != want[1].Hash {
			t.Errorf("ChainHead: %d, %q, %v; want 2, %q", seq, hash, err, want[1].Hash)
		}
		if got, _ := tx.ListEvents(ctx, "job_other"); len(got) != 0 {
			t.Errorf("ListEvents of another chain: %d events", len(got))
		}
		return nil
	})
	for _, c := range []struct {
		name string
		edit func(e *evidence.Event)
	}{
		{"same seq", func(e *evidence.Event) { e.Seq = 2; e.EventID = "01J0000000000000000000000C" }},
		{"same event id", func(e *evidence.Event) { e.Seq = 3; e.EventID = want[0].EventID }},
	} {
		write(t, s, func(ctx context.Context, tx store.Tx) error {
			e := want[1]
			c.edit(&e)
			if err := tx.AppendEvent(ctx, e); !errors.Is(err, store.ErrConflict) {
				t.Errorf("AppendEvent with the %s: %v, want ErrConflict", c.name, err)
			}
			return nil
		})
	}
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		got, err := tx.ListEvents(ctx, job)
		if err != nil {
			return err
		}
		sameEvents(t, got, want)
		return nil
	})
}

func testEventsQuery(t *testing.T, s store.Store) {
	kinds := []evidence.Kind{evidence.KindDecision, evidence.KindApproval, evidence.KindConflict}
	var all []evidence.Event
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for i := range 17 {
			e := fullEvent(fmt.Sprintf("job_%d", i%3), fmt.Sprintf("01J%023d", (i*7)%17),
				kinds[i%3], base+int64(i/2)) // ties on At, broken by EventID
			e.Decision = []string{"allow", "deny", "require_human"}[i%3]
			e.Status = []string{"allowed", "denied", "pending_approval", "approved"}[i%4]
			e.RuleID = []string{"r1", "r2"}[i%2]
			e.PolicySnapshot = []string{"snap_a", "snap_b", "snap_c", "snap_d", "snap_e"}[i%5]
			e.ApprovedBy = []string{"alice", "bob"}[i%2]
			e.Conflict = []string{"SNAPSHOT_DRIFT", "JOB_HASH_MISMATCH", "LOCK_BUSY"}[i%3]
			if err := appendSealed(ctx, tx, &e); err != nil {
				return err
			}
			all = append(all, e)
		}
		return nil
	})
	queries := []store.EventQuery{
		{},
		{Since: base + 2},
		{Until: base + 3},
		{Since: base + 1, Until: base + 4},
		{Kind: "approval"},
		{Decision: "deny"},
		{Status: "approved"},
		{RuleID: "r2"},
		{Snapshot: "snap_c"},
		{ApprovedBy: "bob"},
		{Conflict: "LOCK_BUSY"},
		{JobID: "job_1"},
		{Kind: "decision", JobID: "job_0", Since: base + 1},
		{Kind: "no_such_kind"},
		{AfterAt: base + 3, AfterEventID: all[6].EventID},
	}
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		for _, q := range queries {
			want := filterEvents(all, q)
			got, err := tx.QueryEvents(ctx, q)
			if err != nil {
				return err
			}
			if !slices.Equal(eventIDs(got), eventIDs(want)) {
				t.Errorf("QueryEvents(%+v):\n got %v\nwant %v", q, eventIDs(got), eventIDs(want))
				continue
			}
			sameEvents(t, got, want)
			var paged []evidence.Event
			pq := q
			pq.Limit = 3
			for range len(all) + 1 {
				page, err := tx.QueryEvents(ctx, pq)
				if err != nil {
					return err
				}
				if len(page) > 3 {
					t.Fatalf("page of %d, limit 3", len(page))
				}
				if len(page) == 0 {
					break
				}
				paged = append(paged, page...)
				last := page[len(page)-1]
				pq.AfterAt, pq.AfterEventID = last.At, last.EventID
			}
			if !slices.Equal(eventIDs(paged), eventIDs(want)) {
				t.Errorf("paged QueryEvents(%+v):\n got %v\nwant %v", q, eventIDs(paged), eventIDs(want))
			}
		}
		return nil
	})
}

// filterEvents is the reference QueryEvents.
func filterEvents(all []evidence.Event, q store.EventQuery) []evidence.Event {
	var out []evidence.Event
	for _, e := range all {
		switch {
		case q.Since > 0 && e.At < q.Since,
			q.Until > 0 && e.At >= q.Until,
			q.Kind != "" && string(e.Kind) != q.Kind,
			q.Decision != "" && e.Decision != q.Decision,
			q.Status != "" && e.Status != q.Status,
			q.RuleID != "" && e.RuleID != q.RuleID,
			q.Snapshot != "" && e.PolicySnapshot != q.Snapshot,
			q.ApprovedBy != "" && e.ApprovedBy != q.ApprovedBy,
			q.Conflict != "" && e.Conflict != q.Conflict,
			q.JobID != "" && e.JobID != q.JobID,
			(q.AfterAt != 0 || q.AfterEventID != "") &&
				cmp.Or(cmp.Compare(e.At, q.AfterAt), cmp.Compare(e.EventID, q.AfterEventID)) <= 0:
			continue
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b evidence.Event) int {
		return cmp.Or(cmp.Compare(a.At, b.At), cmp.Compare(a.EventID, b.EventID))
	})
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out
}

// testLockedReads: after a locking GetJob, the chain head and the active snapshot a
// transaction reads follow its own writes, and match what other transactions see.
func testLockedReads(t *testing.T, s store.Store) {
	const job = "job_locked"
	var events []evidence.Event
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		if err := tx.InsertJob(ctx, fullJob(job, base)); err != nil {
			return err
		}
		if err := tx.InsertJob(ctx, fullJob("job_locked_empty", base)); err != nil {
			return err
		}
		for i := range 2 {
			e := fullEvent(job, fmt.Sprintf("01J00000000000000000LOCK%02d", i), evidence.KindApproval, base+int64(i))
			if err := appendSealed(ctx, tx, &e); err != nil {
				return err
			}
			events = append(events, e)
		}
		return nil
	})
	snap := snapshot(7, base)
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		if _, err := tx.GetJob(ctx, "job_locked_empty", true); err != nil {
			return err
		}
		if seq, hash, err := tx.ChainHead(ctx, "job_locked_empty"); err != nil || seq != 0 || hash != "" {
			t.Errorf("ChainHead of a locked job with no events: %d, %q, %v", seq, hash, err)
		}
		if _, err := tx.GetJob(ctx, job, true); err != nil {
			return err
		}
		if seq, hash, err := tx.ChainHead(ctx, job); err != nil || seq != 2 || hash != events[1].Hash {
			t.Errorf("ChainHead after locking: %d, %q, %v; want 2, %q", seq, hash, err, events[1].Hash)
		}
		if _, err := tx.ActiveSnapshotID(ctx); !errors.Is(err, snapshots.ErrNoActive) {
			t.Errorf("ActiveSnapshotID with none active: %v", err)
		}
		e := fullEvent(job, "01J00000000000000000LOCK02", evidence.KindPublish, base+2)
		if err := appendSealed(ctx, tx, &e); err != nil {
			return err
		}
		events = append(events, e)
		if seq, hash, err := tx.ChainHead(ctx, job); err != nil || seq != 3 || hash != e.Hash {
			t.Errorf("ChainHead after appending: %d, %q, %v; want 3, %q", seq, hash, err, e.Hash)
		}
		if _, err := tx.PutSnapshot(ctx, snap); err != nil {
			return err
		}
		if err := tx.SetActiveSnapshot(ctx, snap.ID, time.UnixMicro(base), "ops"); err != nil {
			return err
		}
		if id, err := tx.ActiveSnapshotID(ctx); err != nil || id != snap.ID {
			t.Errorf("ActiveSnapshotID after activating: %q, %v; want %q", id, err, snap.ID)
		}
		return nil
	})
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		if _, err := tx.GetJob(ctx, job, true); err != nil {
			return err
		}
		if id, err := tx.ActiveSnapshotID(ctx); err != nil || id != snap.ID {
			t.Errorf("ActiveSnapshotID in a later transaction: %q, %v; want %q", id, err, snap.ID)
		}
		return nil
	})
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		got, err := tx.ListEvents(ctx, job)
		if err != nil {
			return err
		}
		sameEvents(t, got, events)
		if seq, hash, err := tx.ChainHead(ctx, job); err != nil || seq != 3 || hash != events[2].Hash {
			t.Errorf("ChainHead in a later transaction: %d, %q, %v", seq, hash, err)
		}
		return nil
	})
}
