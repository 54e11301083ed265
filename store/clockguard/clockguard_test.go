package clockguard

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agate-pdp/agate/store"
)

// fakeSource is the database's clock: each refresh reads real time plus dbAhead.
type fakeSource struct {
	mu      sync.Mutex
	dbAhead time.Duration
	sample  store.ClockSample
	ok      bool
}

func (f *fakeSource) LastClockSample() (store.ClockSample, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sample, f.ok
}

func (f *fakeSource) refresh(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	sent := time.Now()
	f.sample, f.ok = store.ClockSample{DB: time.Now().Add(f.dbAhead), Sent: sent, Received: time.Now()}, true
	return nil
}

// nopStore counts writes and pings that reach it.
type nopStore struct {
	store.Store
	writes, pings int
}

func (n *nopStore) ReadWrite(context.Context, func(context.Context, store.Tx) error) error {
	n.writes++
	return nil
}

func (n *nopStore) Ping(context.Context) error {
	n.pings++
	return nil
}

func TestMonitor(t *testing.T) {
	t.Parallel()
	src := &fakeSource{}
	var logs bytes.Buffer
	var observed []float64
	offset := time.Duration(0) // the replica's clock minus real time
	var mu sync.Mutex
	m, err := New(Config{Source: src, MaxSkew: 500 * time.Millisecond, Refresh: src.refresh, Stale: time.Nanosecond,
		Clock: func() time.Time { mu.Lock(); defer mu.Unlock(); return time.Now().Add(offset) },
		Log:   slog.New(slog.NewTextHandler(&logs, nil)), Observe: func(s float64) { observed = append(observed, s) }})
	if err != nil {
		t.Fatal(err)
	}
	setOffset := func(d time.Duration) { mu.Lock(); offset = d; mu.Unlock() }
	inner := &nopStore{}
	guarded := m.Guard(inner)
	ctx := context.Background()

	for _, c := range []struct {
		name    string
		offset  time.Duration
		refused bool
	}{
		{"in step", 0, false},
		{"fast within the bound", 400 * time.Millisecond, false},
		{"slow within the bound", -400 * time.Millisecond, false},
		{"five minutes fast", 5 * time.Minute, true},
		{"two seconds slow", -2 * time.Second, true},
		{"back in step", 10 * time.Millisecond, false},
	} {
		setOffset(c.offset)
		err := m.Check(ctx)
		var se *SkewError
		if got := errors.As(err, &se); got != c.refused {
			t.Fatalf("%s: Check = %v, refused %v", c.name, err, c.refused)
		}
		if skew, ok := m.Skew(); !ok || (skew-c.offset).Abs() > 100*time.Millisecond {
			t.Errorf("%s: skew %v, want about %v", c.name, skew, c.offset)
		}
		writes := inner.writes
		werr := guarded.ReadWrite(ctx, nil)
		perr := guarded.Ping(ctx)
		if c.refused {
			if !errors.Is(werr, store.ErrClockSkew) || !errors.Is(perr, store.ErrUnavailable) || inner.writes != writes {
				t.Errorf("%s: write %v, ping %v: want both refused", c.name, werr, perr)
			}
			if !strings.Contains(werr.Error(), "--max-clock-skew") {
				t.Errorf("%s: %q does not say which bound", c.name, werr)
			}
		} else if werr != nil || perr != nil || inner.writes != writes+1 {
			t.Errorf("%s: write %v, ping %v: want both through", c.name, werr, perr)
		}
	}
	// One line when it leaves the bound, one when it is back: not one per check.
	if n := strings.Count(logs.String(), "beyond the bound"); n != 1 {
		t.Errorf("%d lines on leaving the bound:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), "writing and sealing again"); n != 1 {
		t.Errorf("%d lines on coming back:\n%s", n, logs.String())
	}
	if len(observed) != 6 || observed[3] < 299 {
		t.Errorf("observed %v", observed)
	}
}

// TestMonitorSlowRoundTrip: half the round trip is doubt, never an alarm.
func TestMonitorSlowRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Now()
	src := &fakeSource{ok: true, sample: store.ClockSample{DB: now.Add(-time.Second), Sent: now.Add(-3 * time.Second), Received: now}}
	m, err := New(Config{Source: src, MaxSkew: 500 * time.Millisecond, Stale: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// The database read its clock somewhere in the 3 s round trip: 1.5 s ± 1.5 s.
	if err := m.Check(context.Background()); err != nil {
		t.Errorf("a slow round trip raised %v", err)
	}
}
