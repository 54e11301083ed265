package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// DefaultSealInterval is how often a Sealer looks for chains to seal.
const DefaultSealInterval = 10 * time.Second

// SealerConfig is what a Sealer needs. Store and Key are required.
type SealerConfig struct {
	Store    store.Store
	Key      ed25519.PrivateKey // signs checkpoints; lives outside the database
	Interval time.Duration      // default DefaultSealInterval
	Clock    func() time.Time   // default time.Now
	Log      *slog.Logger       // default: discard
}

// Sealer writes signed checkpoints over the heads of the chains that grew since the
// previous checkpoint. Every replica runs one: they race for each checkpoint's position
// in serializable transactions, one wins and the others find nothing left or try again
// next round. No global event order is needed, and an event that commits late lands in
// the next checkpoint.
type Sealer struct {
	store    store.Store
	key      ed25519.PrivateKey
	interval time.Duration
	clock    func() time.Time
	log      *slog.Logger
}

// NewSealer checks cfg, fills in defaults and returns a Sealer.
func NewSealer(cfg SealerConfig) (*Sealer, error) {
	if cfg.Store == nil {
		return nil, errors.New("audit: SealerConfig.Store is required")
	}
	if len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("audit: SealerConfig.Key must be an Ed25519 private key")
	}
	s := &Sealer{store: cfg.Store, key: cfg.Key, interval: cfg.Interval, clock: cfg.Clock, log: cfg.Log}
	if s.interval <= 0 {
		s.interval = DefaultSealInterval
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// Run seals at once and then every interval until ctx ends. A failed round is logged
// and the next one tries again.
func (s *Sealer) Run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		cp, err := s.SealOnce(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.log.Warn("sealing evidence", "err", err)
		case cp != nil:
			s.log.Debug("evidence sealed", "checkpoint", cp.Seq, "chains", len(cp.Heads))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SealOnce writes one checkpoint over the heads of the chains that grew since the last
// one, and returns it; nil when there was nothing to seal or another sealer got there
// first.
//
// Which chains grew is read in a read-only transaction (so the scan never makes writers
// retry): those with an event stamped at or after the previous checkpoint's time minus
// SealLookback whose head is not sealed. An event that was not yet visible when the
// previous checkpoint scanned committed after that scan, so it is stamped later than
// the scan began minus the time a transaction may take: the lookback finds it. The
// checkpoint records when its scan began, and a chain whose events do not verify is not
// sealed (verification reports it).
func (s *Sealer) SealOnce(ctx context.Context) (*store.Checkpoint, error) {
	scanAt := s.clock().UnixMicro()
	var heads []evidence.Head
	err := s.store.Read(ctx, func(ctx context.Context, tx store.Tx) error {
		heads = nil
		since := int64(0)
		last, err := tx.LastCheckpoint(ctx)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		default:
			since = max(0, last.At-micros(SealLookback))
		}
		candidates, err := tx.UnsealedHeads(ctx, since)
		if err != nil {
			return err
		}
		heads, err = intactHeads(ctx, tx, candidates, s.log)
		return err
	})
	if err != nil || len(heads) == 0 {
		return nil, err
	}
	var out *store.Checkpoint
	err = s.store.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		out = nil
		var prev *store.Checkpoint
		last, err := tx.LastCheckpoint(ctx)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		case last.At >= scanAt:
			return nil // another sealer scanned later than this one: its window covers ours
		default:
			prev = &last
		}
		ids := make([]string, len(heads))
		for i, h := range heads {
			ids[i] = h.JobID
		}
		sealed, err := tx.SealedSeqs(ctx, ids)
		if err != nil {
			return err
		}
		fresh := slices.DeleteFunc(slices.Clone(heads), func(h evidence.Head) bool { return h.Seq <= sealed[h.JobID] })
		if len(fresh) == 0 {
			return nil
		}
		c := store.Checkpoint{Seq: 1}
		var prevCP *evidence.Checkpoint
		if prev != nil {
			c.Seq, prevCP = prev.Seq+1, &prev.Checkpoint
		}
		if c.Checkpoint, err = evidence.NewCheckpoint(ulid.Make().String(), scanAt, fresh, prevCP, s.key); err != nil {
			return err
		}
		if err := tx.AppendCheckpoint(ctx, c); err != nil {
			return err
		}
		out = &c
		return nil
	})
	if errors.Is(err, store.ErrConflict) {
		return nil, nil // another sealer took the position; the next round seals what is left
	}
	return out, err
}

// intactHeads returns the heads whose chains verify, so a checkpoint never vouches for
// a chain that was already tampered with.
func intactHeads(ctx context.Context, tx store.Tx, heads []evidence.Head, log *slog.Logger) ([]evidence.Head, error) {
	bad := map[string]bool{}
	for chunk := range slices.Chunk(heads, 200) {
		ids := make([]string, len(chunk))
		for i, h := range chunk {
			ids[i] = h.JobID
		}
		events, err := tx.ListChainEvents(ctx, store.ChainQuery{JobIDs: ids})
		if err != nil {
			return nil, err
		}
		for start := 0; start < len(events); {
			end := start + 1
			for end < len(events) && events[end].JobID == events[start].JobID {
				end++
			}
			if problems := evidence.VerifyChain(events[start:end]); problems != nil {
				bad[events[start].JobID] = true
				log.Warn("evidence chain does not verify: not sealing it", "job_id", events[start].JobID,
					"problem", problems[0].Kind, "seq", problems[0].Seq)
			}
			start = end
		}
	}
	return slices.DeleteFunc(heads, func(h evidence.Head) bool { return bad[h.JobID] }), nil
}
