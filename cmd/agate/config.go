package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/agate-pdp/agate/audit"
)

// serveConfig is everything `agate serve` is configured with, from flags or AGATE_*
// environment variables (a flag given on the command line wins).
type serveConfig struct {
	GRPCAddr    string
	HTTPAddr    string
	DB          string
	PolicyFile  string
	TokensFile  string
	TLSCert     string
	TLSKey      string
	TLSClientCA string
	EvidenceKey string // checkpoint signing key; "" means evidenceKeyPath's default
	// Evidence identity, witness and clock: see evidence_start.go.
	EvidenceRotateFrom string        // the key to rotate from, when changing the deployment's key
	EvidenceWitness    string        // witness file; "" means evidenceWitnessPath's default
	MaxClockSkew       time.Duration // beyond it against the database's clock, the replica writes nothing

	SnapshotRefresh   time.Duration
	SnapshotCacheSize int
	ShutdownGrace     time.Duration
	MaxCallTime       time.Duration
	SealInterval      time.Duration // how often this replica seals new evidence into a checkpoint
	EvidenceSettle    time.Duration // how old events must be before QueryEvidence pages over them
	LogLevel          string

	DecideBatchWindow time.Duration // group commit: how long a batch waits for company
	DecideBatchMax    int           // group commit: Decides per transaction; <= 1 turns it off
	DecideInFlight    int           // group commit: batch transactions at once; 0 picks per backend

	Pprof bool // serve net/http/pprof on the HTTP listener
}

func defaultServeConfig() serveConfig {
	return serveConfig{
		GRPCAddr:          "127.0.0.1:7070",
		HTTPAddr:          "127.0.0.1:7071",
		DB:                "data/agate.db",
		SnapshotRefresh:   time.Second,
		SnapshotCacheSize: 64,
		ShutdownGrace:     10 * time.Second,
		MaxCallTime:       30 * time.Second,
		SealInterval:      audit.DefaultSealInterval,
		EvidenceSettle:    audit.DefaultSettle,
		MaxClockSkew:      audit.DefaultMaxClockSkew,
		LogLevel:          "info",
		DecideBatchWindow: time.Millisecond,
		DecideBatchMax:    64,
	}
}

// parseServeConfig reads flags over environment over defaults, then validates.
func parseServeConfig(args []string, stderr io.Writer) (serveConfig, error) {
	c := defaultServeConfig()
	fs := flag.NewFlagSet("agate serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	str := func(p *string, name, env, usage string) {
		if v, ok := os.LookupEnv(env); ok {
			*p = v
		}
		fs.StringVar(p, name, *p, usage+" (env "+env+")")
	}
	dur := func(p *time.Duration, name, env, usage string) {
		if v, ok := os.LookupEnv(env); ok {
			if d, err := time.ParseDuration(v); err == nil {
				*p = d
			} else {
				*p = -1 // rejected by Validate with the variable's name
			}
		}
		fs.DurationVar(p, name, *p, usage+" (env "+env+")")
	}
	str(&c.GRPCAddr, "grpc-addr", "AGATE_GRPC_ADDR", "gRPC listen address")
	str(&c.HTTPAddr, "http-addr", "AGATE_HTTP_ADDR", "HTTP listen address for /metrics, /healthz, /readyz")
	str(&c.DB, "db", "AGATE_DB", "database: a SQLite file path, or a postgres:// / postgresql:// URL (PostgreSQL or CockroachDB)")
	str(&c.PolicyFile, "policy", "AGATE_POLICY", "policy file to activate at start and on SIGHUP (optional)")
	str(&c.TokensFile, "tokens", "AGATE_TOKENS", "tokens file: principals, roles and SHA-256 token digests (required)")
	str(&c.TLSCert, "tls-cert", "AGATE_TLS_CERT", "server certificate (PEM)")
	str(&c.TLSKey, "tls-key", "AGATE_TLS_KEY", "server private key (PEM)")
	str(&c.TLSClientCA, "tls-client-ca", "AGATE_TLS_CLIENT_CA", "CA bundle for client certificates (enables mTLS)")
	str(&c.EvidenceKey, "evidence-key", "AGATE_EVIDENCE_KEY", "Ed25519 key file that signs evidence checkpoints, created (0600) if missing; keep it out of the database and give every replica the same file; required with a PostgreSQL/CockroachDB database (SQLite default, for development: evidence.key next to the database file)")
	str(&c.EvidenceRotateFrom, "evidence-rotate-from", "AGATE_EVIDENCE_ROTATE_FROM", "the deployment's current key file, to rotate to --evidence-key: the old key endorses the new one in the next checkpoint")
	str(&c.EvidenceWitness, "evidence-witness", "AGATE_EVIDENCE_WITNESS", "append-only file this replica copies every checkpoint it writes to, outside the database (default: witness.jsonl next to the key file)")
	dur(&c.MaxClockSkew, "max-clock-skew", "AGATE_MAX_CLOCK_SKEW", "how far this replica's clock may be from the database's; beyond it the replica writes and seals nothing and reports NOT_SERVING")
	str(&c.LogLevel, "log-level", "AGATE_LOG_LEVEL", "debug, info, warn or error")
	dur(&c.SnapshotRefresh, "snapshot-refresh", "AGATE_SNAPSHOT_REFRESH", "how often a replica re-reads the active snapshot")
	dur(&c.ShutdownGrace, "shutdown-grace", "AGATE_SHUTDOWN_GRACE", "how long shutdown waits for in-flight calls")
	dur(&c.MaxCallTime, "max-call-time", "AGATE_MAX_CALL_TIME", "longest any call may run")
	dur(&c.SealInterval, "seal-interval", "AGATE_SEAL_INTERVAL", "how often this replica seals new evidence into a signed checkpoint")
	dur(&c.EvidenceSettle, "evidence-settle", "AGATE_EVIDENCE_SETTLE", "how old events must be before QueryEvidence pages over them: longer than a transaction takes to commit, plus the replicas' clock skew")
	cache := strconv.Itoa(c.SnapshotCacheSize)
	str(&cache, "snapshot-cache", "AGATE_SNAPSHOT_CACHE", "compiled snapshots kept in memory")
	dur(&c.DecideBatchWindow, "decide-batch-window", "AGATE_DECIDE_BATCH_WINDOW", "how long a Decide batch waits for more Decides while the database is busy")
	batchMax := strconv.Itoa(c.DecideBatchMax)
	str(&batchMax, "decide-batch-max", "AGATE_DECIDE_BATCH_MAX", "most Decides committed in one transaction; 0 or 1 turns group commit off")
	inFlight := strconv.Itoa(c.DecideInFlight)
	str(&inFlight, "decide-batch-inflight", "AGATE_DECIDE_BATCH_INFLIGHT", "Decide batch transactions running at once; 0 picks 1 for SQLite (one writer) and 2 for PostgreSQL")
	pprof := strconv.FormatBool(c.Pprof)
	str(&pprof, "pprof", "AGATE_PPROF", "serve Go's profiler at /debug/pprof/ on --http-addr (true or false); keep that address private")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	n, err := strconv.Atoi(cache)
	if err != nil {
		return c, fmt.Errorf("--snapshot-cache: %q is not a number", cache)
	}
	c.SnapshotCacheSize = n
	if c.DecideBatchMax, err = strconv.Atoi(batchMax); err != nil {
		return c, fmt.Errorf("--decide-batch-max: %q is not a number", batchMax)
	}
	if c.DecideInFlight, err = strconv.Atoi(inFlight); err != nil {
		return c, fmt.Errorf("--decide-batch-inflight: %q is not a number", inFlight)
	}
	if c.Pprof, err = strconv.ParseBool(pprof); err != nil {
		return c, fmt.Errorf("--pprof: %q is not true or false", pprof)
	}
	return c, c.Validate()
}

// Validate reports every configuration problem at once, each naming its flag.
func (c serveConfig) Validate() error {
	var errs []error
	addr := func(name, v string) {
		if _, _, err := net.SplitHostPort(v); err != nil {
			errs = append(errs, fmt.Errorf("--%s: %q is not host:port", name, v))
		}
	}
	addr("grpc-addr", c.GRPCAddr)
	addr("http-addr", c.HTTPAddr)
	if c.DB == "" {
		errs = append(errs, errors.New("--db: is empty"))
	}
	if c.TokensFile == "" {
		errs = append(errs, errors.New("--tokens: is required (no anonymous access)"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key: give both or neither"))
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("--tls-client-ca: needs --tls-cert and --tls-key"))
	}
	for name, d := range map[string]time.Duration{"snapshot-refresh": c.SnapshotRefresh,
		"shutdown-grace": c.ShutdownGrace, "max-call-time": c.MaxCallTime,
		"seal-interval": c.SealInterval, "evidence-settle": c.EvidenceSettle, "max-clock-skew": c.MaxClockSkew} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("--%s: must be a positive duration", name))
		}
	}
	if c.SnapshotCacheSize <= 0 {
		errs = append(errs, errors.New("--snapshot-cache: must be positive"))
	}
	if c.DecideBatchWindow < 0 {
		errs = append(errs, errors.New("--decide-batch-window: must be a duration, 0 or more"))
	}
	if c.DecideBatchMax < 0 {
		errs = append(errs, errors.New("--decide-batch-max: must be 0 or more"))
	}
	if c.DecideInFlight < 0 {
		errs = append(errs, errors.New("--decide-batch-inflight: must be 0 or more"))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if _, sqlite := sqlitePath(c.DB); !sqlite && c.EvidenceKey == "" && c.DB != "" {
		errs = append(errs, errors.New("--evidence-key: is required with a database server: every replica must sign "+
			"evidence with one key, so give each the same key file (kept outside the database; "+
			"`agate evidence keygen --out FILE` makes one)"))
	}
	return errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level: %q is not debug, info, warn or error", s)
	}
	return l, nil
}

// evidenceKeyPath is the checkpoint signing key's file: --evidence-key, else, for a
// SQLite database only, evidence.key next to it: a development default, since whoever
// can copy the database file can then copy the key too. A database server needs
// --evidence-key (Validate), so its replicas cannot each make a key of their own.
func (c serveConfig) evidenceKeyPath() string {
	if c.EvidenceKey != "" {
		return c.EvidenceKey
	}
	if path, ok := sqlitePath(c.DB); ok {
		return filepath.Join(filepath.Dir(path), "evidence.key")
	}
	return ""
}

// evidenceWitnessPath is the witness file: --evidence-witness, else witness.jsonl next
// to the key file.
func (c serveConfig) evidenceWitnessPath() string {
	if c.EvidenceWitness != "" {
		return c.EvidenceWitness
	}
	return filepath.Join(filepath.Dir(c.evidenceKeyPath()), "witness.jsonl")
}

// decideInFlight is --decide-batch-inflight, or the backend's default when it is 0:
// SQLite has one writer, so a second batch would only queue behind the first, while
// PostgreSQL commits two batches in parallel and overlaps one's flush with the next's
// statements.
func (c serveConfig) decideInFlight() int {
	if c.DecideInFlight > 0 {
		return c.DecideInFlight
	}
	if _, ok := sqlitePath(c.DB); ok {
		return 1
	}
	return 2
}

// sqlitePath returns the file of a SQLite --db value, and false for a server URL.
func sqlitePath(db string) (string, bool) {
	scheme, _, _ := strings.Cut(db, "://")
	switch {
	case scheme == "sqlite" || scheme == "file":
		return strings.TrimPrefix(strings.TrimPrefix(db, "sqlite://"), "file://"), true
	case strings.Contains(db, "://"):
		return "", false
	}
	return db, true
}
