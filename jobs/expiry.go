package jobs

import (
	"context"
	"slices"
	"time"

	"github.com/agate-pdp/agate/store"
)

// ExpiryPrincipal is the principal the expiry sweeper's events name: Agate itself,
// expiring a job whose approval ttl passed while nobody touched it.
const ExpiryPrincipal = SystemPrincipal + ":expiry"

// expiryBatch bounds the jobs one sweep transaction expires, so a backlog (a replica
// back after an outage) is worked off in transactions of bounded size and lock count.
const expiryBatch = 100

// ExpireDue moves every pending job whose approval deadline has passed to expired, each
// with its expiry event, and returns how many it moved. Every replica may run it at
// once: each batch is one serializable transaction that locks each due job and checks
// its status and deadline again, so a job another replica expired first, or an approver
// approved first, is left alone and nothing is written for it.
func (s *Service) ExpireDue(ctx context.Context) (int, error) {
	total := 0
	for {
		n, full, err := s.expireBatch(ctx)
		total += n
		// A batch that expired nothing ends the sweep even when full: the due list
		// would name the same jobs again.
		if err != nil || !full || n == 0 {
			return total, err
		}
	}
}

// expireBatch expires up to expiryBatch due jobs in one transaction; full reports
// whether the store had that many due, so there may be more.
func (s *Service) expireBatch(ctx context.Context) (n int, full bool, err error) {
	p := Principal{ID: ExpiryPrincipal}
	err = s.write(ctx, "", func(ctx context.Context, tx store.Tx, now int64) error {
		n, full = 0, false
		ids, err := tx.DueJobs(ctx, store.StatusPendingApproval, now, expiryBatch)
		if err != nil {
			return err
		}
		full = len(ids) == expiryBatch
		// One statement locks them all, in id order, as a lifecycle batch does, and
		// one per table writes the expiries.
		slices.Sort(ids)
		b, err := lockBatch(ctx, tx, slices.Compact(ids))
		if err != nil {
			return err
		}
		for _, id := range ids {
			j, ok := b.jobs[id]
			// The due list was read before the lock: decide on the locked row.
			if !ok || j.Status != store.StatusPendingApproval || j.ExpiresAt <= 0 || now < j.ExpiresAt {
				continue
			}
			w := b.begin()
			if err := expire(ctx, w, &j, p, now); err != nil {
				return err
			}
			w.keep()
			n++
		}
		return b.flush(ctx)
	})
	if err != nil {
		n = 0 // rolled back
	}
	return n, full, err
}

// RunExpiry runs ExpireDue every interval until ctx ends, so a pending job becomes
// expired within about interval of its deadline without anyone touching it. Run it on
// every replica: ExpireDue is safe to run concurrently, and any replica left running
// keeps expiry on time.
func (s *Service) RunExpiry(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := s.ExpireDue(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("expiring overdue jobs", "expired", n, "err", err)
		case n > 0:
			s.log.Info("expired overdue jobs", "expired", n)
		}
	}
}
