package sqlstore

import (
	"database/sql"
	"errors"
	"fmt"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// MapError turns a driver error into one that matches the store error it means, while
// still wrapping the driver error (so the retry loop can see a serialization failure
// through it). Errors the store does not name are returned unchanged.
func (d *Dialect) MapError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	switch d.Classify(err) {
	case ClassUnique:
		return fmt.Errorf("%w: %w", store.ErrConflict, err)
	case ClassForeignKey:
		return fmt.Errorf("%w: referenced record: %w", store.ErrNotFound, err)
	case ClassCheck:
		// The only CHECKs guard evidence completeness.
		return fmt.Errorf("%w: refused by the %s schema: %w", evidence.ErrIncomplete, d.Name, err)
	case ClassUnavailable:
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}
