package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
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
	// Witness receives a copy of every checkpoint before it commits; optional. When
	// it cannot be written, nothing is sealed (fail closed).
	Witness *Witness
	// MaxClockSkew is the replicas' clock bound; the sealing window derives from it.
	// Default DefaultMaxClockSkew.
	MaxClockSkew time.Duration
}

// Sealer writes signed checkpoints over the heads of the chains that grew since the
// previous checkpoint. Every replica runs one: they race for each checkpoint's position
// in serializable transactions, one wins and the others find nothing left or try again
// next round. No global event order is needed, and an event that commits late lands in
// the next checkpoint.
type Sealer struct {
	store    store.Store
	key      ed25519.PrivateKey
	keyID    string
	interval time.Duration
	lookback int64 // µs
	clock    func() time.Time
	log      *slog.Logger
	witness  *Witness

	// sealMu makes one sealing round at a time per Sealer, so pending belongs to it.
	sealMu  sync.Mutex
	pending []store.Checkpoint // witnessed in the current ReadWrite, not yet settled
}

// NewSealer checks cfg, fills in defaults and returns a Sealer.
func NewSealer(cfg SealerConfig) (*Sealer, error) {
	if cfg.Store == nil {
		return nil, errors.New("audit: SealerConfig.Store is required")
	}
	if len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("audit: SealerConfig.Key must be an Ed25519 private key")
	}
	pub, _ := cfg.Key.Public().(ed25519.PublicKey)
	s := &Sealer{store: cfg.Store, key: cfg.Key, keyID: evidence.KeyID(pub), interval: cfg.Interval, clock: cfg.Clock,
		log: cfg.Log, witness: cfg.Witness, lookback: micros(SealWindow(cfg.MaxClockSkew))}
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
		case errors.Is(err, ErrKeyMismatch), errors.Is(err, errWitness):
			// Not passing: this replica seals nothing until an operator acts.
			s.log.Error("not sealing evidence", "err", err)
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
// the sealing window (SealWindow) whose head is not sealed. An event that was not yet visible when the
// previous checkpoint scanned committed after that scan, so it is stamped later than
// the scan began minus the time a transaction may take: the lookback finds it. The
// checkpoint records when its scan began, and a chain whose events do not verify is not
// sealed (verification reports it).
func (s *Sealer) SealOnce(ctx context.Context) (*store.Checkpoint, error) {
	return s.seal(ctx, nil)
}

// claim asks a sealing round to establish this sealer's key as the deployment's: with
// no checkpoint yet, the round writes one even with nothing to seal; with the newest
// checkpoint signed by the key from, it writes the rotation to this key.
type claim struct {
	from ed25519.PrivateKey // the key rotated from; nil when not rotating
}

func (s *Sealer) seal(ctx context.Context, cl *claim) (*store.Checkpoint, error) {
	s.sealMu.Lock()
	defer s.sealMu.Unlock()
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
			since = max(0, last.At-s.lookback)
		}
		candidates, err := tx.UnsealedHeads(ctx, since)
		if err != nil {
			return err
		}
		heads, err = intactHeads(ctx, tx, candidates, s.log)
		return err
	})
	if err != nil || (len(heads) == 0 && cl == nil) {
		return nil, err
	}
	var out *store.Checkpoint
	err = s.store.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		out = nil
		var prev *store.Checkpoint
		var rotateFrom ed25519.PrivateKey
		last, err := tx.LastCheckpoint(ctx)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		case last.KeyID != s.keyID:
			if cl == nil || cl.from == nil || last.KeyID != evidence.KeyID(cl.from.Public().(ed25519.PublicKey)) {
				return &KeyMismatchError{Seq: last.Seq, Signer: last.KeyID, Ours: s.keyID}
			}
			rotateFrom, prev = cl.from, &last
		case cl != nil:
			return nil // the key is already the deployment's
		case last.At >= scanAt:
			return nil // another sealer scanned later than this one: its window covers ours
		default:
			prev = &last
		}
		fresh := heads
		if len(heads) > 0 {
			ids := make([]string, len(heads))
			for i, h := range heads {
				ids[i] = h.JobID
			}
			sealed, err := tx.SealedSeqs(ctx, ids)
			if err != nil {
				return err
			}
			fresh = slices.DeleteFunc(slices.Clone(heads), func(h evidence.Head) bool { return h.Seq <= sealed[h.JobID] })
		}
		if len(fresh) == 0 && cl == nil {
			return nil
		}
		c := store.Checkpoint{Seq: 1}
		var prevCP *evidence.Checkpoint
		at := scanAt
		if prev != nil {
			c.Seq, prevCP, at = prev.Seq+1, &prev.Checkpoint, max(scanAt, prev.At+1)
		}
		if rotateFrom != nil {
			c.Checkpoint, err = evidence.NewRotation(ulid.Make().String(), at, fresh, prevCP, rotateFrom, s.key)
		} else {
			c.Checkpoint, err = evidence.NewCheckpoint(ulid.Make().String(), at, fresh, prevCP, s.key)
		}
		if err != nil {
			return err
		}
		if err := s.append(ctx, tx, c); err != nil {
			return err
		}
		out = &c
		return nil
	})
	err = s.settle(out, err)
	if errors.Is(err, store.ErrConflict) && cl == nil {
		return nil, nil // another sealer took the position; the next round seals what is left
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Claim makes this sealer's key the deployment's signing identity before the replica
// serves, so a replica with another key fails at start rather than later, far from
// the cause. The newest checkpoint names the identity: with none yet, Claim writes
// the first (sealing whatever is unsealed); when it was signed by this key, nothing
// is written; when it was signed by rotateFrom (optional), Claim writes the rotation
// to this key, endorsed by the old one. Any other key is a *KeyMismatchError. It
// returns the checkpoint it wrote, or nil.
func (s *Sealer) Claim(ctx context.Context, rotateFrom ed25519.PrivateKey) (*store.Checkpoint, error) {
	if rotateFrom != nil && len(rotateFrom) != ed25519.PrivateKeySize {
		return nil, errors.New("audit: the key to rotate from is not an Ed25519 private key")
	}
	for attempt := 0; ; attempt++ {
		c, err := s.seal(ctx, &claim{from: rotateFrom})
		if errors.Is(err, store.ErrConflict) && attempt < 5 {
			continue // another replica wrote a checkpoint meanwhile: look again
		}
		return c, err
	}
}

// KeyMismatchError: the newest checkpoint was signed by another key than this
// replica's. It says what to do.
type KeyMismatchError struct {
	Seq          int64
	Signer, Ours string
}

func (e *KeyMismatchError) Error() string {
	return fmt.Sprintf("the newest evidence checkpoint (%d) was signed by key %s, but this replica's --evidence-key is %s: "+
		"every replica of a deployment must sign with the same key. Give this replica the deployment's key file, "+
		"or, to change the deployment's key, start it with the new key and --evidence-rotate-from set to the old key's file",
		e.Seq, e.Signer, e.Ours)
}

// Is makes errors.Is(err, ErrKeyMismatch) true.
func (e *KeyMismatchError) Is(target error) bool { return target == ErrKeyMismatch }

// ErrKeyMismatch: the newest checkpoint was signed by another key than this replica's.
var ErrKeyMismatch = errors.New("audit: the deployment's signing key is not this replica's")

// append stores c in tx and witnesses it before the transaction commits, so no
// checkpoint commits unwitnessed. A witness that cannot be written fails the
// transaction: nothing is sealed rather than something unwitnessed.
func (s *Sealer) append(ctx context.Context, tx store.Tx, c store.Checkpoint) error {
	if err := s.pendingAbort(); err != nil {
		return err
	}
	if err := tx.AppendCheckpoint(ctx, c); err != nil {
		return err
	}
	if s.witness == nil {
		return nil
	}
	if err := s.witness.Append(c); err != nil {
		return fmt.Errorf("%w: %w", errWitness, err)
	}
	s.pending = append(s.pending, c)
	return nil
}

// settle ends the witnessing of a ReadWrite that returned err: every checkpoint it
// witnessed but did not commit (all of them on error, all but committed on success:
// a retried attempt rolled back) is marked aborted. A commit whose outcome is unknown
// (the database went away at COMMIT) is left witnessed: verification then names it
// if it did not commit and nothing took its position.
func (s *Sealer) settle(committed *store.Checkpoint, err error) error {
	pending := s.pending
	s.pending = nil
	for _, c := range pending {
		if committed != nil && err == nil && c.Seq == committed.Seq && c.Hash == committed.Hash {
			continue
		}
		if errors.Is(err, store.ErrUnavailable) {
			continue
		}
		if werr := s.witness.Abort(c, s.key); werr != nil {
			s.log.Error("witness: recording an aborted checkpoint", "seq", c.Seq, "err", werr)
		}
	}
	return err
}

// pendingAbort marks aborted what an earlier attempt of the same transaction witnessed:
// the store runs the callback again only after rolling the attempt back.
func (s *Sealer) pendingAbort() error {
	for _, c := range s.pending {
		if err := s.witness.Abort(c, s.key); err != nil {
			return fmt.Errorf("%w: %w", errWitness, err)
		}
	}
	s.pending = nil
	return nil
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
