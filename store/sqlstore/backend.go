package sqlstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
)

// ActiveSnapshot implements snapshots.Source for a backend given its Read method, and
// records the database's clock the statement read in clock.
func ActiveSnapshot(ctx context.Context, read func(context.Context, func(context.Context, store.Tx) error) error, clock *Clock) (snap snapshots.Snapshot, err error) {
	err = read(ctx, func(ctx context.Context, tx store.Tx) error {
		sent := time.Now()
		var db int64
		snap, db, err = tx.(*Tx).ActiveSnapshot(ctx)
		if db > 0 {
			clock.record(store.ClockSample{DB: time.UnixMicro(db), Sent: sent, Received: time.Now()})
		}
		return err
	})
	return snap, err
}

// Clock holds a backend's latest reading of the database's clock.
type Clock struct {
	mu   sync.Mutex
	last store.ClockSample
	ok   bool
}

func (c *Clock) record(s store.ClockSample) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last, c.ok = s, true
}

// LastClockSample implements store.ClockReader.
func (c *Clock) LastClockSample() (store.ClockSample, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last, c.ok
}

// PingError maps a failed ping: the caller's own deadline stays itself, anything else
// means the database is unavailable.
func PingError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}
