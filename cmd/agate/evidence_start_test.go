package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store/sqlite"
)

// TestStartEvidence: a replica starts only with its clock within the bound and the
// deployment's key, and exports its measured skew.
func TestStartEvidence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, "agate.db")
	st, err := sqlite.Open(ctx, db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	cache, _ := snapshots.NewCache(4)
	log := slog.New(slog.DiscardHandler)
	cfg := defaultServeConfig()
	cfg.DB = db

	fast := func() time.Time { return time.Now().Add(5 * time.Minute) }
	if _, err := startEvidence(ctx, cfg, st, cache, fast, log); err == nil || !strings.Contains(err.Error(), "--max-clock-skew") {
		t.Errorf("start five minutes fast: %v", err)
	}

	rt, err := startEvidence(ctx, cfg, st, cache, time.Now, log)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(rt.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetName() != "agate_clock_skew_seconds" ||
		mfs[0].GetMetric()[0].GetGauge().GetValue() > 1 || mfs[0].GetMetric()[0].GetGauge().GetValue() < -1 {
		t.Errorf("metrics %v, %v: want agate_clock_skew_seconds near 0", mfs, err)
	}

	other := cfg
	other.EvidenceKey = filepath.Join(dir, "other.key")
	_, err = startEvidence(ctx, other, st, cache, time.Now, log)
	if err == nil || !strings.Contains(err.Error(), "--evidence-rotate-from") {
		t.Errorf("start with another key: %v", err)
	}
	// Rotating to it with the deployment's key is what the message asks for.
	other.EvidenceRotateFrom = cfg.evidenceKeyPath()
	rot, err := startEvidence(ctx, other, st, cache, time.Now, log)
	if err != nil {
		t.Fatal(err)
	}
	rot.Close()
	if _, err := startEvidence(ctx, cfg, st, cache, time.Now, log); err == nil {
		t.Error("the key rotated away from started")
	}
}
