// Package clockguard keeps a replica's writes within one clock. Events, approval
// deadlines and checkpoints carry the replica's own time, and sealing tolerates only
// a bounded disagreement between replicas; so each replica measures its clock against
// the database's, with the reading its active-snapshot refresh takes anyway
// (store.ClockReader), and while the two differ by more than the bound it writes
// nothing: its store refuses write transactions with store.ErrClockSkew and its ping
// fails, so health reports NOT_SERVING and balancers route around it.
package clockguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/agate-pdp/agate/store"
)

// Config is what a Monitor needs. Source and MaxSkew are required.
type Config struct {
	Source  store.ClockReader
	MaxSkew time.Duration
	// Refresh takes a reading when the latest is older than Stale (the replica's
	// snapshot refresh may not be running); e.g. the store's ActiveSnapshot.
	Refresh func(ctx context.Context) error
	Stale   time.Duration    // default 5 s
	Clock   func() time.Time // the replica's clock, the one its events carry; default time.Now
	Log     *slog.Logger     // default: discard
	// Observe, when set, receives every measured skew in seconds (local minus
	// database), e.g. to set a gauge.
	Observe func(seconds float64)
}

// Monitor tracks one replica's clock skew.
type Monitor struct {
	cfg Config

	mu    sync.Mutex
	err   error         // non-nil while out of bounds
	skew  time.Duration // last measured
	known bool
}

// New checks cfg and returns a Monitor; it measures nothing yet (see Check).
func New(cfg Config) (*Monitor, error) {
	if cfg.Source == nil || cfg.MaxSkew <= 0 {
		return nil, errors.New("clockguard: Source and a positive MaxSkew are required")
	}
	if cfg.Stale <= 0 {
		cfg.Stale = 5 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Monitor{cfg: cfg}, nil
}

// SkewError says how far the replica's clock is from the database's.
type SkewError struct {
	Skew, Max time.Duration
}

func (e *SkewError) Error() string {
	return fmt.Sprintf("this replica's clock is %v off the database's, beyond --max-clock-skew %v: it writes nothing until its time is synchronised",
		e.Skew.Round(time.Millisecond), e.Max)
}

// Is makes errors.Is(err, store.ErrClockSkew) true.
func (e *SkewError) Is(target error) bool { return target == store.ErrClockSkew }

// Err returns a *SkewError while the clock is out of bounds, else nil. Before the first
// measurement it is nil: Check once before serving.
func (m *Monitor) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Skew returns the last measured skew (local minus database) and whether there is one.
func (m *Monitor) Skew() (time.Duration, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.skew, m.known
}

// Check measures the skew from the latest reading (taking one when it is stale) and
// updates the state; it returns Err. A failed reading leaves the state as it was: the
// database being unreachable is the store's to report.
func (m *Monitor) Check(ctx context.Context) error {
	s, ok := m.cfg.Source.LastClockSample()
	if (!ok || time.Since(s.Received) > m.cfg.Stale) && m.cfg.Refresh != nil {
		// Its error does not matter: with no snapshot active, the statement still read
		// the clock; with the database down, the reading stays old.
		_ = m.cfg.Refresh(ctx)
		s, ok = m.cfg.Source.LastClockSample()
	}
	if !ok {
		return m.Err()
	}
	// The database read its clock between sent and received: compare it with what the
	// replica's clock said halfway, and give it the benefit of the doubt of half the
	// round trip, so a slow round trip never raises a false alarm.
	half := s.Received.Sub(s.Sent) / 2
	local := m.cfg.Clock().Add(-time.Since(s.Sent.Add(half)))
	skew := local.Sub(s.DB)
	off := max(skew, -skew) - half
	m.mu.Lock()
	defer m.mu.Unlock()
	m.skew, m.known = skew, true
	if m.cfg.Observe != nil {
		m.cfg.Observe(skew.Seconds())
	}
	switch {
	case off > m.cfg.MaxSkew && m.err == nil:
		m.err = &SkewError{Skew: skew, Max: m.cfg.MaxSkew}
		m.cfg.Log.Error("clock skew beyond the bound: not writing or sealing until it is back within it",
			"skew", skew.String(), "max_clock_skew", m.cfg.MaxSkew.String())
	case off > m.cfg.MaxSkew:
		m.err = &SkewError{Skew: skew, Max: m.cfg.MaxSkew}
	case m.err != nil:
		m.err = nil
		m.cfg.Log.Info("clock skew back within the bound: writing and sealing again",
			"skew", skew.String(), "max_clock_skew", m.cfg.MaxSkew.String())
	}
	return m.err
}

// Run checks every interval until ctx ends.
func (m *Monitor) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = m.Check(ctx)
		}
	}
}

// Guard returns st with its writes and pings refused while the clock is out of bounds:
// ReadWrite returns the *SkewError (store.ErrClockSkew) without running, and Ping an
// ErrUnavailable naming it. Reads pass.
func (m *Monitor) Guard(st store.Store) store.Store { return &guarded{Store: st, m: m} }

type guarded struct {
	store.Store
	m *Monitor
}

func (g *guarded) ReadWrite(ctx context.Context, fn func(context.Context, store.Tx) error) error {
	if err := g.m.Err(); err != nil {
		return err
	}
	return g.Store.ReadWrite(ctx, fn)
}

func (g *guarded) Ping(ctx context.Context) error {
	if err := g.m.Err(); err != nil {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return g.Store.Ping(ctx)
}

// LastClockSample passes the wrapped store's readings through.
func (g *guarded) LastClockSample() (store.ClockSample, bool) {
	if cr, ok := g.Store.(store.ClockReader); ok {
		return cr.LastClockSample()
	}
	return store.ClockSample{}, false
}
