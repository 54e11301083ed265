package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
)

// DefaultSettle is how old an event must be before QueryEvidence pages over it: longer
// than a transaction takes from reading its clock to committing, plus the clock skew
// between replicas.
const DefaultSettle = 5 * time.Second

// CommitBound bounds how late a transaction may commit after stamping its events with
// its replica's clock: calls end long before it (--max-call-time), retries included.
const CommitBound = time.Minute

// DefaultMaxClockSkew is how far a replica's clock may stray from the database's
// before the replica stops writing and sealing (--max-clock-skew).
const DefaultMaxClockSkew = time.Second

// SealWindow is how far before the previous checkpoint the Sealer looks for chains
// that grew, and how old an event must be, compared with the latest checkpoint, before
// verification expects it sealed: CommitBound, plus twice the clock bound, as the
// replica that stamped an event and the one that sealed may each stray by maxSkew in
// opposite directions. maxSkew <= 0 means DefaultMaxClockSkew.
func SealWindow(maxSkew time.Duration) time.Duration {
	if maxSkew <= 0 {
		maxSkew = DefaultMaxClockSkew
	}
	return CommitBound + 2*maxSkew
}

// SealLookback is SealWindow at the default clock bound.
var SealLookback = SealWindow(DefaultMaxClockSkew)

// pageLimit is how many rows one query reads while walking a window.
const pageLimit = 1000

// Config is what a Service needs. Store and PublicKey (or Key) are required.
type Config struct {
	Store     store.Store
	PublicKey ed25519.PublicKey // verifies checkpoints; served to auditors for pinning; default Key's
	// Key is the evidence signing key, which signs export manifests: a Service
	// without it cannot Export. Its public half must be PublicKey.
	Key ed25519.PrivateKey
	// TrustedKeys are further keys verification trusts, e.g. the key rotated from.
	// Keys a valid rotation connects to PublicKey are trusted without being listed.
	TrustedKeys  []ed25519.PublicKey
	MaxClockSkew time.Duration    // the replicas' clock bound; default DefaultMaxClockSkew
	Cache        *snapshots.Cache // compiled snapshots for decision replay; default: a new one
	Settle       time.Duration    // default DefaultSettle
	Clock        func() time.Time // default time.Now
}

// Service answers auditors' questions from the store.
type Service struct {
	store   store.Store
	pub     ed25519.PublicKey
	key     ed25519.PrivateKey  // signs export manifests; nil: no export
	trusted []ed25519.PublicKey // pub first
	maxSkew time.Duration
	cache   *snapshots.Cache
	settle  time.Duration
	clock   func() time.Time
}

// New checks cfg, fills in defaults and returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("audit: Config.Store is required")
	}
	if cfg.Key != nil {
		if len(cfg.Key) != ed25519.PrivateKeySize {
			return nil, errors.New("audit: Config.Key must be an Ed25519 private key")
		}
		pub, _ := cfg.Key.Public().(ed25519.PublicKey)
		if cfg.PublicKey == nil {
			cfg.PublicKey = pub
		}
		if !pub.Equal(cfg.PublicKey) {
			return nil, errors.New("audit: Config.Key is not the private half of Config.PublicKey")
		}
	}
	if len(cfg.PublicKey) != ed25519.PublicKeySize {
		return nil, errors.New("audit: Config.PublicKey must be an Ed25519 public key")
	}
	s := &Service{store: cfg.Store, pub: cfg.PublicKey, key: cfg.Key, cache: cfg.Cache, settle: cfg.Settle, clock: cfg.Clock,
		trusted: append([]ed25519.PublicKey{cfg.PublicKey}, cfg.TrustedKeys...), maxSkew: cfg.MaxClockSkew}
	if s.cache == nil {
		c, err := snapshots.NewCache(snapshots.DefaultCacheSize)
		if err != nil {
			return nil, err
		}
		s.cache = c
	}
	if s.settle <= 0 {
		s.settle = DefaultSettle
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	return s, nil
}

// PublicKey returns the key checkpoints are verified with.
func (s *Service) PublicKey() ed25519.PublicKey { return s.pub }

// Window is the time range [Since, Until) in µs since the Unix epoch; 0 leaves an end
// open.
type Window struct {
	Since, Until int64
}

func (w Window) check() error {
	switch {
	case w.Since < 0:
		return invalid("since", "must not be negative")
	case w.Until < 0:
		return invalid("until", "must not be negative")
	case w.Until > 0 && w.Since >= w.Until:
		return invalid("until", "must be after since")
	}
	return nil
}

func (w Window) open() bool { return w.Since == 0 && w.Until == 0 }

func (w Window) query() store.EventQuery { return store.EventQuery{Since: w.Since, Until: w.Until} }

func invalid(field, format string, args ...any) *jobs.Error {
	return &jobs.Error{Code: jobs.CodeInvalidArgument, Reason: jobs.ReasonInvalidField, Field: field,
		Msg: field + ": " + fmt.Sprintf(format, args...), Meta: map[string]string{"field": field}}
}

func notFound(what, id string) *jobs.Error {
	return &jobs.Error{Code: jobs.CodeNotFound, Reason: jobs.ReasonNotFound, Msg: what + " " + id + " not found"}
}

// mapErr turns the store's error values into *jobs.Error; anything else passes through.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrUnavailable):
		return &jobs.Error{Code: jobs.CodeUnavailable, Reason: jobs.ReasonUnavailable,
			Msg: "the database is unavailable; retry later"}
	case errors.Is(err, store.ErrBusy):
		return &jobs.Error{Code: jobs.CodeAborted, Reason: jobs.ReasonLockBusy, Msg: "the database is busy; retry with backoff"}
	}
	return err
}

// read runs fn in one read-only transaction, so everything it reads is one consistent
// view. fn may run more than once: it must reset what it accumulates.
func (s *Service) read(ctx context.Context, fn func(ctx context.Context, tx store.Tx) error) error {
	return mapErr(s.store.Read(ctx, fn))
}

// eachEvent calls fn for every event q matches, in (At, EventID) order, a page at a time.
func eachEvent(ctx context.Context, tx store.Tx, q store.EventQuery, fn func(e *evidence.Event) error) error {
	q.Limit = pageLimit
	for {
		page, err := tx.QueryEvents(ctx, q)
		if err != nil {
			return err
		}
		for i := range page {
			if err := fn(&page[i]); err != nil {
				return err
			}
		}
		if len(page) < q.Limit {
			return nil
		}
		last := page[len(page)-1]
		q.AfterAt, q.AfterEventID = last.At, last.EventID
	}
}

// chainsIn returns the ids of the chains with an event in w, in order of first event.
func chainsIn(ctx context.Context, tx store.Tx, w Window) ([]string, error) {
	seen := map[string]bool{}
	var ids []string
	err := eachEvent(ctx, tx, w.query(), func(e *evidence.Event) error {
		if !seen[e.JobID] {
			seen[e.JobID] = true
			ids = append(ids, e.JobID)
		}
		return nil
	})
	return ids, err
}

func micros(d time.Duration) int64 { return d.Microseconds() }
