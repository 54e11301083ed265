package audit

import (
	"context"
	"errors"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// ExportItem is one item of an export: an event or a checkpoint.
type ExportItem struct {
	Event      *evidence.Event
	Checkpoint *store.Checkpoint
}

// Export hands emit every chain with an event in w, whole and in chain order (so each
// chain verifies on its own), then every checkpoint, in order, that existed when the
// export began: each sealed head is then among the events sent. VerifyExport checks
// the result offline. Nothing is held in one transaction: emit may be slow.
func (s *Service) Export(ctx context.Context, w Window, emit func(ExportItem) error) error {
	if err := w.check(); err != nil {
		return err
	}
	var lastSeq int64
	err := s.read(ctx, func(ctx context.Context, tx store.Tx) error {
		last, err := tx.LastCheckpoint(ctx)
		if errors.Is(err, store.ErrNotFound) {
			lastSeq = 0
			return nil
		}
		lastSeq = last.Seq
		return err
	})
	if err != nil {
		return err
	}
	err = s.eachChain(ctx, w, func(_ string, events []evidence.Event) error {
		for i := range events {
			if err := emit(ExportItem{Event: &events[i]}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	const batch = 100
	for after := int64(0); after < lastSeq; {
		var cps []store.Checkpoint
		err := s.read(ctx, func(ctx context.Context, tx store.Tx) error {
			var err error
			cps, err = tx.ListCheckpoints(ctx, after, batch)
			return err
		})
		if err != nil {
			return err
		}
		if len(cps) == 0 {
			return nil
		}
		for i := range cps {
			if cps[i].Seq > lastSeq {
				return nil
			}
			if err := emit(ExportItem{Checkpoint: &cps[i]}); err != nil {
				return err
			}
		}
		after = cps[len(cps)-1].Seq
	}
	return nil
}
