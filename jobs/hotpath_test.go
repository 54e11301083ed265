package jobs_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
)

// readCounter counts every way of reading the database.
type readCounter struct {
	store.Store
	reads, writes atomic.Int64
}

func (c *readCounter) Read(ctx context.Context, fn func(context.Context, store.Tx) error) error {
	c.reads.Add(1)
	return c.Store.Read(ctx, fn)
}

func (c *readCounter) ReadWrite(ctx context.Context, fn func(context.Context, store.Tx) error) error {
	c.writes.Add(1)
	return c.Store.ReadWrite(ctx, fn)
}

func (c *readCounter) ActiveSnapshot(ctx context.Context) (snapshots.Snapshot, error) {
	c.reads.Add(1)
	return c.Store.ActiveSnapshot(ctx)
}

// TestHotPathReadsNothing: Decide costs one write transaction and no read, Evaluate
// (of the active snapshot, by default or by name) none at all.
func TestHotPathReadsNothing(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, st store.Store, m commitMode) {
		t.Parallel()
		c := &readCounter{Store: st}
		e := m.env(t, c, testPolicy)
		c.reads.Store(0)
		c.writes.Store(0)
		ctx := context.Background()
		for _, s := range []jobSpec{payment, report, export} {
			r := s.request(newID("hot"))
			_, err := e.svc.Evaluate(ctx, r, "")
			wantNoErr(t, err)
			_, err = e.svc.Evaluate(ctx, r, e.snap)
			wantNoErr(t, err)
			_, err = e.svc.Decide(ctx, decider, r)
			wantNoErr(t, err)
		}
		if r, w := c.reads.Load(), c.writes.Load(); r != 0 || w != 3 {
			t.Fatalf("%d reads and %d write transactions for 3 Decides and 6 Evaluates, want 0 and 3", r, w)
		}
	})
}
