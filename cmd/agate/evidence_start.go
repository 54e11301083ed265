package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agate-pdp/agate/audit"
	"github.com/agate-pdp/agate/authzen"
	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/clockguard"
)

// evidenceRuntime is what a serving replica needs to keep its evidence trustworthy:
// the audit service, its sealer and witness, and the clock guard its writes go through.
type evidenceRuntime struct {
	Auditor *audit.Service
	// Store is the database with writes refused while this replica's clock is out of
	// bounds: give it to everything that writes, and to health.
	Store   store.Store
	sealer  *audit.Sealer
	witness *audit.Witness
	clock   *clockguard.Monitor
	skew    prometheus.Gauge
	// key and from are the deployment's signing key and, during a rotation, the key
	// rotated from: the roots of the access request profile's MAC keys.
	key, from ed25519.PrivateKey
}

// startEvidence prepares a replica's evidence before it serves, and refuses to start
// when the evidence could not be trusted:
//
//   - the clock: this replica's clock is measured against the database's; beyond
//     --max-clock-skew it does not start (and once running, it stops writing);
//   - the identity: the newest checkpoint must have been signed by this replica's key
//     (--evidence-key), or, with --evidence-rotate-from, by the key to rotate from, in
//     which case the rotation is written now; with no checkpoint yet, this key becomes
//     the deployment's (see audit.Sealer.Claim);
//   - the witness: the file every checkpoint this replica writes is copied to.
//
// st is the store as opened; clock is the replica's clock (time.Now but in tests).
func startEvidence(ctx context.Context, cfg serveConfig, st store.Store, cache *snapshots.Cache, clock func() time.Time, log *slog.Logger) (*evidenceRuntime, error) {
	path := cfg.evidenceKeyPath()
	if path == "" {
		return nil, errors.New("--evidence-key: is required with a database server")
	}
	key, created, err := evidence.LoadOrCreateKey(path)
	if err != nil {
		return nil, fmt.Errorf("--evidence-key: %w", err)
	}
	pub, _ := key.Public().(ed25519.PublicKey)
	if created {
		log.Warn("evidence signing key created: back it up, give every replica the same file, and pin its public key (agate evidence public-key)",
			"file", path, "key_id", evidence.KeyID(pub))
	} else {
		log.Info("evidence signing key loaded", "file", path, "key_id", evidence.KeyID(pub))
	}
	var from ed25519.PrivateKey
	var trusted []ed25519.PublicKey
	if cfg.EvidenceRotateFrom != "" {
		if from, err = evidence.LoadKey(cfg.EvidenceRotateFrom); err != nil {
			return nil, fmt.Errorf("--evidence-rotate-from: %w", err)
		}
		trusted = append(trusted, from.Public().(ed25519.PublicKey))
	}

	rt := &evidenceRuntime{skew: prometheus.NewGauge(prometheus.GaugeOpts{Name: "agate_clock_skew_seconds",
		Help: "This replica's clock minus the database's, as last measured; beyond --max-clock-skew (either way) it writes nothing."}),
		key: key, from: from}
	source, ok := st.(store.ClockReader)
	if !ok {
		return nil, errors.New("the store cannot read the database's clock")
	}
	rt.clock, err = clockguard.New(clockguard.Config{Source: source, MaxSkew: cfg.MaxClockSkew, Clock: clock, Log: log,
		Refresh: func(ctx context.Context) error { _, err := st.ActiveSnapshot(ctx); return err },
		Stale:   2 * cfg.SnapshotRefresh, Observe: rt.skew.Set})
	if err != nil {
		return nil, err
	}
	if err := rt.clock.Check(ctx); err != nil {
		return nil, fmt.Errorf("--max-clock-skew: %w", err)
	}
	if _, measured := rt.clock.Skew(); !measured {
		return nil, errors.New("could not read the database's clock")
	}
	rt.Store = rt.clock.Guard(st)

	if rt.witness, err = audit.OpenWitness(cfg.evidenceWitnessPath()); err != nil {
		return nil, fmt.Errorf("--evidence-witness: %w", err)
	}
	rt.sealer, err = audit.NewSealer(audit.SealerConfig{Store: rt.Store, Key: key, Interval: cfg.SealInterval, Clock: clock,
		Log: log, Witness: rt.witness, MaxClockSkew: cfg.MaxClockSkew})
	if err != nil {
		rt.Close()
		return nil, err
	}
	cp, err := rt.sealer.Claim(ctx, from)
	if err != nil {
		rt.Close()
		return nil, err
	}
	switch {
	case cp != nil && cp.Rotation != nil:
		log.Warn("evidence signing key rotated: pin the new key; the old key signs nothing from now on",
			"checkpoint", cp.Seq, "from", evidence.KeyID(cp.Rotation.From), "to", evidence.KeyID(pub))
	case cp != nil:
		log.Info("evidence signing key claimed for this deployment", "checkpoint", cp.Seq, "key_id", evidence.KeyID(pub))
	case from != nil:
		log.Info("evidence signing key already rotated: --evidence-rotate-from is no longer needed", "key_id", evidence.KeyID(pub))
	}
	rt.Auditor, err = audit.New(audit.Config{Store: st, Key: key, TrustedKeys: trusted, Cache: cache,
		Settle: cfg.EvidenceSettle, Clock: clock, MaxClockSkew: cfg.MaxClockSkew})
	if err != nil {
		rt.Close()
		return nil, err
	}
	log.Info("evidence witness", "file", rt.witness.Path())
	return rt, nil
}

// AuthZENSecret is the root of the access request profile's task-id and
// evaluation-id MACs: the signing key's seed, which every replica shares, and during
// a rotation the from-key's, whose evaluation ids are still accepted.
func (rt *evidenceRuntime) AuthZENSecret() authzen.Secret {
	s := authzen.Secret{Key: rt.key.Seed()}
	if rt.from != nil {
		s.From = rt.from.Seed()
	}
	return s
}

// Collectors are the runtime's metrics, to register.
func (rt *evidenceRuntime) Collectors() []prometheus.Collector {
	return []prometheus.Collector{rt.skew}
}

// Run seals and watches the clock until ctx ends.
func (rt *evidenceRuntime) Run(ctx context.Context) {
	go rt.clock.Run(ctx, time.Second)
	rt.sealer.Run(ctx)
}

// Close closes the witness file.
func (rt *evidenceRuntime) Close() {
	if rt.witness != nil {
		_ = rt.witness.Close()
	}
}
