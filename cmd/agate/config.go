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

	DBPasswordFile          string // the database password, read once at start
	RequireClientCert       bool   // every authenticated call presents a mapped client certificate
	InsecurePlaintextTokens bool   // accept bearer tokens over plaintext on a non-loopback address
	MaxStreamTime           time.Duration
	MaxPublicStreams        int // unauthenticated streams (health Watch, reflection) at once
	MaxConcurrentStreams    int // streams per HTTP/2 connection
}

func defaultServeConfig() serveConfig {
	return serveConfig{
		GRPCAddr:             "127.0.0.1:7070",
		HTTPAddr:             "127.0.0.1:7071",
		DB:                   "data/agate.db",
		SnapshotRefresh:      time.Second,
		SnapshotCacheSize:    64,
		ShutdownGrace:        10 * time.Second,
		MaxCallTime:          30 * time.Second,
		SealInterval:         audit.DefaultSealInterval,
		EvidenceSettle:       audit.DefaultSettle,
		LogLevel:             "info",
		DecideBatchWindow:    time.Millisecond,
		DecideBatchMax:       64,
		MaxStreamTime:        15 * time.Minute,
		MaxPublicStreams:     64,
		MaxConcurrentStreams: 100,
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
	str(&c.EvidenceKey, "evidence-key", "AGATE_EVIDENCE_KEY", "Ed25519 key file that signs evidence checkpoints, created (0600) if missing; keep it out of the database and share it between replicas (default: evidence.key next to the SQLite file, else data/evidence.key)")
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
	boolean := func(p *bool, name, env, usage string) func() error {
		var envErr error
		if v, ok := os.LookupEnv(env); ok {
			if *p, envErr = strconv.ParseBool(v); envErr != nil {
				envErr = fmt.Errorf("%s: %q is not true or false", env, v)
			}
		}
		fs.Var(boolFlag{p}, name, usage+" (env "+env+")")
		return func() error { return envErr }
	}
	number := func(p *int, name, env, usage string) func() error {
		v := strconv.Itoa(*p)
		str(&v, name, env, usage)
		return func() (err error) {
			if *p, err = strconv.Atoi(v); err != nil {
				return fmt.Errorf("--%s: %q is not a number", name, v)
			}
			return nil
		}
	}
	str(&c.DBPasswordFile, "db-password-file", "AGATE_DB_PASSWORD_FILE", "file holding the database password, read once at start; keeps it off the command line (PGPASSWORD and PGPASSFILE work too)")
	later := []func() error{
		boolean(&c.RequireClientCert, "require-client-cert", "AGATE_REQUIRE_CLIENT_CERT", "demand a verified client certificate that the tokens file maps to a principal on every authenticated call; needs --tls-client-ca"),
		boolean(&c.InsecurePlaintextTokens, "insecure-plaintext-tokens", "AGATE_INSECURE_PLAINTEXT_TOKENS", "accept bearer tokens over plaintext gRPC on a non-loopback --grpc-addr: only when TLS is terminated in front of Agate, e.g. by a service mesh sidecar"),
		number(&c.MaxPublicStreams, "max-public-streams", "AGATE_MAX_PUBLIC_STREAMS", "unauthenticated streams (health Watch, reflection) open at once; more are refused RESOURCE_EXHAUSTED"),
		number(&c.MaxConcurrentStreams, "max-concurrent-streams", "AGATE_MAX_CONCURRENT_STREAMS", "concurrent calls per client connection"),
	}
	dur(&c.MaxStreamTime, "max-stream-time", "AGATE_MAX_STREAM_TIME", "longest a streaming call (ExportEvidence, health Watch, reflection) may run; clients reconnect or resume")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	for _, f := range later {
		if err := f(); err != nil {
			return c, err
		}
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
		"seal-interval": c.SealInterval, "evidence-settle": c.EvidenceSettle, "max-stream-time": c.MaxStreamTime} {
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
	if c.MaxPublicStreams <= 0 {
		errs = append(errs, errors.New("--max-public-streams: must be positive"))
	}
	if c.MaxConcurrentStreams <= 0 {
		errs = append(errs, errors.New("--max-concurrent-streams: must be positive"))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.validateSecurity()...)
	return errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level: %q is not debug, info, warn or error", s)
	}
	return l, nil
}

// evidenceKeyPath is the checkpoint signing key's file: --evidence-key, else
// evidence.key next to a SQLite database, else data/evidence.key.
func (c serveConfig) evidenceKeyPath() string {
	if c.EvidenceKey != "" {
		return c.EvidenceKey
	}
	if path, ok := sqlitePath(c.DB); ok {
		return filepath.Join(filepath.Dir(path), "evidence.key")
	}
	return filepath.Join("data", "evidence.key")
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

// boolFlag is a flag that may stand alone (--require-client-cert) or take a value
// (--require-client-cert=false).
type boolFlag struct{ p *bool }

func (b boolFlag) String() string {
	if b.p == nil {
		return "false"
	}
	return strconv.FormatBool(*b.p)
}

func (b boolFlag) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("not true or false")
	}
	*b.p = v
	return nil
}

func (b boolFlag) IsBoolFlag() bool { return true }
