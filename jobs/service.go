package jobs

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/agate-pdp/agate/identity"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
)

// Config is what a Service needs. Store and Tracker are required.
type Config struct {
	Store   store.Store
	Tracker *snapshots.Tracker // the replica's view of the active snapshot (hot path: no DB read)
	Cache   *snapshots.Cache   // compiled snapshots; default: a new cache of DefaultCacheSize
	Clock   func() time.Time   // default time.Now
	Log     *slog.Logger       // default: discard
	Batch   Batch              // group commit of Decide and of the lifecycle writes; the zero value is off
	// Outsiders bounds the calls a principal may make on jobs it has no standing on
	// (or that do not exist); the zero value is the default.
	Outsiders OutsiderLimit
	// Watch tunes watch streams (see Service.Watch); the zero value is the default.
	Watch WatchConfig
}

// Service runs the job lifecycle. It holds no state of its own beyond caches: any replica
// may serve any call, and correctness comes from the store's transactions.
type Service struct {
	store   store.Store
	tracker *snapshots.Tracker
	cache   *snapshots.Cache
	clock   func() time.Time
	log     *slog.Logger
	decides *batcher[*decideCall] // nil when batching is off
	writes  *batcher[*writeCall]  // lifecycle writes; nil when batching is off
	// outsiders limits, per principal, refused calls without standing
	outsiders *limiter
	watch     WatchConfig
}

// New checks cfg, fills in defaults and returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("jobs: Config.Store is required")
	}
	if cfg.Tracker == nil {
		return nil, errors.New("jobs: Config.Tracker is required")
	}
	if cfg.Batch.Window < 0 {
		return nil, errors.New("jobs: Config.Batch.Window must not be negative")
	}
	s := &Service{store: cfg.Store, tracker: cfg.Tracker, cache: cfg.Cache, clock: cfg.Clock, log: cfg.Log,
		outsiders: newLimiter(cfg.Outsiders), watch: cfg.Watch.withDefaults()}
	if s.cache == nil {
		c, err := snapshots.NewCache(snapshots.DefaultCacheSize)
		if err != nil {
			return nil, err
		}
		s.cache = c
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Batch.on() {
		s.decides = newBatcher(cfg.Batch, s.runDecides)
		// Lifecycle batches run one at a time, whatever InFlight says: each reads the
		// rows, chains and approvals of its jobs, and under SERIALIZABLE PostgreSQL
		// tracks those reads by index page, so two batches side by side on neighbouring
		// job ids (time-ordered ids are neighbours) would fail each other. Decide
		// batches mostly only insert, and run side by side unharmed.
		lifecycle := cfg.Batch
		lifecycle.InFlight = 1
		s.writes = newBatcher(lifecycle, s.runWrites)
	}
	return s, nil
}

// Close stops group commit: calls already queued are written and answered, later ones
// get a transaction each. It returns when every batch has finished; call it before
// closing the store. Without batching it does nothing.
func (s *Service) Close() {
	if s.decides != nil {
		s.decides.close()
		s.writes.close()
	}
}

// Principal is the authenticated caller. Its ID is what evidence records as the
// principal, approver, rejecter or canceller; it never comes from a request field.
type Principal struct {
	ID    string
	Roles []string
	// Auth is how the caller authenticated, recorded as evidence's auth_method: "token",
	// "certificate", "certificate+token" or "oidc:<issuer>"; empty for Agate itself.
	Auth string
}

// HasRole reports whether p holds role r.
func (p Principal) HasRole(r string) bool { return slices.Contains(p.Roles, r) }

// SystemPrincipal is the principal recorded for transitions Agate makes on its own, such
// as expiring overdue jobs while listing the approval queue.
const SystemPrincipal = "agate"

// IsSystemID reports whether id is, or could be taken for, one of Agate's own
// principals ("agate", "agate:expiry", "agate:policy-file"): no person or service may be
// called so, or the evidence of its acts would read as Agate's.
func IsSystemID(id string) bool {
	sk, err := identity.Skeleton(id)
	if err != nil {
		return false
	}
	sys, _ := identity.Skeleton(SystemPrincipal)
	prefix, _ := identity.Skeleton(SystemPrincipal + ":")
	return sk == sys || strings.HasPrefix(sk, prefix)
}

// conflictRetries bounds how often a transaction that lost an insert race (a concurrent
// Decide of the same new job, a concurrent append to the policy chain) runs again.
const conflictRetries = 3

// txFunc is one attempt of a write; now is read per attempt, so a retried attempt
// records the time it really ran.
type txFunc func(ctx context.Context, tx store.Tx, now int64) error

// write runs fn in a serializable write transaction and commits it, unless fn fails.
// fn may end with a refuseAfterCommit verdict: then the transaction commits and write
// returns the refusal. Contention that outlasts the store's retry budget is Aborted
// LOCK_BUSY (see recordBusy for its evidence).
func (s *Service) write(ctx context.Context, jobID string, fn txFunc) error {
	var refusal *Error
	var err error
	for range conflictRetries {
		err = s.store.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
			refusal = nil
			err := fn(ctx, tx, s.nowMicro())
			if answer, ok := asRefusal(err); ok {
				refusal = answer
				return nil
			}
			return err
		})
		if !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	if errors.Is(err, store.ErrConflict) {
		err = store.ErrBusy // lost every race: contention, as far as the caller is concerned
	}
	if err == nil && refusal != nil {
		return refusal
	}
	return mapStoreErr(err, "job", jobID)
}

// read runs fn in a read-only transaction.
func (s *Service) read(ctx context.Context, what, id string, fn func(ctx context.Context, tx store.Tx) error) error {
	return mapStoreErr(s.store.Read(ctx, fn), what, id)
}

func (s *Service) nowMicro() int64 { return s.clock().UnixMicro() }
