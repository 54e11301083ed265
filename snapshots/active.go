package snapshots

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agate-pdp/agate/decision"
)

// ErrNoActive is returned when no snapshot has ever been activated.
var ErrNoActive = errors.New("snapshots: no active snapshot")

// Source tells a replica which snapshot is active. The store implements it; Memory is an
// in-process implementation for tests and tools.
type Source interface {
	// ActiveSnapshot returns the active snapshot, or ErrNoActive.
	ActiveSnapshot(ctx context.Context) (Snapshot, error)
}

// Active is a snapshot together with its compiled engine.
type Active struct {
	Snapshot Snapshot
	Engine   *decision.Engine
}

// Tracker is a replica's cached view of the active snapshot. Decide and Evaluate read it
// without touching the database; Approve and Publish re-read the pointer inside their
// transaction, so a lagging view can delay a decision's snapshot but never let drift pass.
type Tracker struct {
	src   Source
	cache *Cache
	log   *slog.Logger
	cur   atomic.Pointer[Active]
}

// NewTracker returns a tracker that has not loaded anything yet; call Refresh or Run.
func NewTracker(src Source, cache *Cache, log *slog.Logger) *Tracker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Tracker{src: src, cache: cache, log: log}
}

// Current returns the last active snapshot seen, and false when none is known yet.
func (t *Tracker) Current() (*Active, bool) {
	a := t.cur.Load()
	return a, a != nil
}

// Refresh reads the active snapshot from the source now.
func (t *Tracker) Refresh(ctx context.Context) (*Active, error) {
	before := t.cur.Load()
	s, err := t.src.ActiveSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	if a := t.cur.Load(); a != nil && a.Snapshot.ID == s.ID {
		return a, nil
	}
	e, err := t.cache.Engine(s)
	if err != nil {
		return nil, err
	}
	a := &Active{Snapshot: s, Engine: e}
	// A Set while the read was in flight installed a snapshot this replica activated
	// after the read began: the read's answer is older, so it must not replace it.
	if !t.cur.CompareAndSwap(before, a) {
		return t.cur.Load(), nil
	}
	t.log.Info("active snapshot", "snapshot", s.ID, "rules", s.RuleCount)
	for _, w := range e.Warnings() {
		t.log.Warn("active snapshot: policy warning", "snapshot", s.ID, "warning", w.String())
	}
	return a, nil
}

// Set installs a snapshot this replica has just activated itself, so its own next
// decision does not wait for the refresh interval.
func (t *Tracker) Set(s Snapshot, e *decision.Engine) {
	t.cache.Add(s.ID, e)
	t.cur.Store(&Active{Snapshot: s, Engine: e})
}

// Run refreshes every interval until ctx ends. Errors are logged and retried on the next
// tick: a replica keeps deciding under its last known snapshot while the database blips.
func (t *Tracker) Run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if _, err := t.Refresh(ctx); err != nil && !errors.Is(err, ErrNoActive) && ctx.Err() == nil {
				t.log.Warn("refreshing active snapshot", "err", err)
			}
		}
	}
}

// Memory is an in-memory Source holding snapshots and an active pointer.
type Memory struct {
	mu     sync.Mutex
	snaps  map[string]Snapshot
	active string
}

// NewMemory returns an empty in-memory source.
func NewMemory() *Memory { return &Memory{snaps: map[string]Snapshot{}} }

// Put stores s (idempotent by id) and, when activate is set, makes it active.
func (m *Memory) Put(s Snapshot, activate bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.snaps[s.ID]; !ok {
		m.snaps[s.ID] = s
	}
	if activate {
		m.active = s.ID
	}
}

// ActiveSnapshot implements Source.
func (m *Memory) ActiveSnapshot(context.Context) (Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.active == "" {
		return Snapshot{}, ErrNoActive
	}
	return m.snaps[m.active], nil
}
