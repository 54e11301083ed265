package sqlstore

import (
	"context"
	"fmt"

	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
)

// ActiveSnapshot implements snapshots.Source for a backend given its Read method.
func ActiveSnapshot(ctx context.Context, read func(context.Context, func(context.Context, store.Tx) error) error) (snap snapshots.Snapshot, err error) {
	err = read(ctx, func(ctx context.Context, tx store.Tx) error {
		snap, err = tx.(*Tx).ActiveSnapshot(ctx)
		return err
	})
	return snap, err
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
