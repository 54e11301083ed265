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
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/agate-pdp/agate/audit"
	"github.com/agate-pdp/agate/authzen"
)

// serveConfig is everything `agate serve` is configured with, from flags or AGATE_*
// environment variables (a flag given on the command line wins).
type serveConfig struct {
	GRPCAddr    string
	HTTPAddr    string
	AuthZENAddr string // the AuthZEN HTTP API's listener; "" serves none
	AuthZENURL  string // the public base URL the AuthZEN metadata names; "" derives it per request
	HTTPAPIAddr string // Agate's own API over HTTP (the Connect protocol); "" serves none
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
	ExpiryInterval    time.Duration // how often this replica expires pending jobs past their deadline
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

	// Notifications: see notifications.go.
	NotificationsFile          string // destinations file; "" delivers nothing (rows are still written, and pruned)
	NotifyAllowPrivateNetworks bool   // every destination may reach loopback and private addresses
	NotifyMaxAttempts          int
	NotifyBackoff              time.Duration
	NotifyBackoffMax           time.Duration
	NotifyTimeout              time.Duration
	NotifyLease                time.Duration
	NotifyPoll                 time.Duration
	NotifyRetention            time.Duration
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
		ExpiryInterval:       time.Second,
		LogLevel:             "info",
		DecideBatchWindow:    time.Millisecond,
		DecideBatchMax:       64,
		MaxStreamTime:        15 * time.Minute,
		MaxPublicStreams:     64,
		MaxConcurrentStreams: 100,
		MaxClockSkew:         audit.DefaultMaxClockSkew,
		NotifyMaxAttempts:    10,
		NotifyBackoff:        5 * time.Second,
		NotifyBackoffMax:     time.Hour,
		NotifyTimeout:        10 * time.Second,
		NotifyLease:          2 * time.Minute,
		NotifyPoll:           time.Second,
		NotifyRetention:      7 * 24 * time.Hour,
	}
}

// parseServeConfig reads flags over AGATE_* environment variables over a --config file
// over defaults, then validates. Every flag's variable is AGATE_ and its name in upper
// case with underscores; a config file's keys are the flag names.
func parseServeConfig(args []string, stderr io.Writer) (serveConfig, error) {
	c := defaultServeConfig()
	fs := flag.NewFlagSet("agate serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: agate serve [flags]\n\nEach flag can also be set by the AGATE_* variable named in its help, or as a key of --config.\n\n")
		fs.PrintDefaults()
	}
	configFile := serveFlags(fs, &c)
	if err := parseFlags(fs, args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if err := applyLayers(fs, *configFile); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// serveFlags defines agate serve's flags on fs, each writing into c, and returns where
// --config lands.
func serveFlags(fs *flag.FlagSet, c *serveConfig) *string {
	str := func(p *string, name, usage string) { fs.StringVar(p, name, *p, usage+envNote(name)) }
	dur := func(p *time.Duration, name, usage string) { fs.DurationVar(p, name, *p, usage+envNote(name)) }
	num := func(p *int, name, usage string) { fs.IntVar(p, name, *p, usage+envNote(name)) }
	boolean := func(p *bool, name, usage string) { fs.BoolVar(p, name, *p, usage+envNote(name)) }
	configFile := new(string)
	str(configFile, "config", "YAML file whose keys are these flags' names (flags and AGATE_* variables override it)")
	str(&c.GRPCAddr, "grpc-addr", "gRPC listen address")
	str(&c.HTTPAddr, "http-addr", "HTTP listen address for /metrics, /healthz, /readyz")
	str(&c.AuthZENAddr, "authzen-addr", "listen address of the AuthZEN Authorization API (HTTP, TLS with --tls-cert); empty serves none")
	str(&c.HTTPAPIAddr, "http-api-addr", "listen address of Agate's API over HTTP/JSON, the Connect protocol (TLS with --tls-cert); empty serves none")
	str(&c.AuthZENURL, "authzen-url", "public https base URL of the AuthZEN API, named in its metadata (default: the URL each metadata request used)")
	str(&c.DB, "db", "database: a SQLite file path, or a postgres:// / postgresql:// URL (PostgreSQL or CockroachDB)")
	str(&c.PolicyFile, "policy", "policy file to activate at start and on SIGHUP (optional)")
	str(&c.TokensFile, "tokens", "tokens file: principals, roles and SHA-256 token digests (required)")
	str(&c.TLSCert, "tls-cert", "server certificate (PEM)")
	str(&c.TLSKey, "tls-key", "server private key (PEM)")
	str(&c.TLSClientCA, "tls-client-ca", "CA bundle for client certificates (enables mTLS)")
	str(&c.EvidenceKey, "evidence-key", "Ed25519 key file that signs evidence checkpoints, created (0600) if missing; keep it out of the database and give every replica the same file; required with a PostgreSQL/CockroachDB database (SQLite default, for development: evidence.key next to the database file)")
	str(&c.EvidenceRotateFrom, "evidence-rotate-from", "the deployment's current key file, to rotate to --evidence-key: the old key endorses the new one in the next checkpoint")
	str(&c.EvidenceWitness, "evidence-witness", "append-only file this replica copies every checkpoint it writes to, outside the database (default: witness.jsonl next to the key file)")
	dur(&c.MaxClockSkew, "max-clock-skew", "how far this replica's clock may be from the database's; beyond it the replica writes and seals nothing and reports NOT_SERVING")
	str(&c.LogLevel, "log-level", "debug, info, warn or error")
	dur(&c.SnapshotRefresh, "snapshot-refresh", "how often a replica re-reads the active snapshot")
	dur(&c.ShutdownGrace, "shutdown-grace", "how long shutdown waits for in-flight calls")
	dur(&c.MaxCallTime, "max-call-time", "longest any call may run")
	dur(&c.SealInterval, "seal-interval", "how often this replica seals new evidence into a signed checkpoint")
	dur(&c.EvidenceSettle, "evidence-settle", "how old events must be before QueryEvidence pages over them: longer than a transaction takes to commit, plus the replicas' clock skew")
	dur(&c.ExpiryInterval, "expiry-interval", "how often this replica moves pending jobs past their approval deadline to expired (every replica sweeps; a job expires within about this long of its deadline)")
	num(&c.SnapshotCacheSize, "snapshot-cache", "compiled snapshots kept in memory")
	dur(&c.DecideBatchWindow, "decide-batch-window", "how long a batch of Decides, or of lifecycle writes, waits for more while the database is busy")
	num(&c.DecideBatchMax, "decide-batch-max", "most Decides, or lifecycle writes, committed in one transaction; 0 or 1 turns group commit off")
	num(&c.DecideInFlight, "decide-batch-inflight", "Decide batch transactions running at once; 0 picks 1 for SQLite (one writer) and 2 for PostgreSQL; lifecycle batches run one at a time")
	boolean(&c.Pprof, "pprof", "serve Go's profiler at /debug/pprof/ on --http-addr; keep that address private")
	str(&c.DBPasswordFile, "db-password-file", "file holding the database password, read once at start; keeps it off the command line (PGPASSWORD and PGPASSFILE work too)")
	boolean(&c.RequireClientCert, "require-client-cert", "demand a verified client certificate that the tokens file maps to a principal on every authenticated call; needs --tls-client-ca")
	boolean(&c.InsecurePlaintextTokens, "insecure-plaintext-tokens", "accept bearer tokens over plaintext gRPC on a non-loopback --grpc-addr: only when TLS is terminated in front of Agate, e.g. by a service mesh sidecar")
	num(&c.MaxPublicStreams, "max-public-streams", "unauthenticated streams (health Watch, reflection) open at once; more are refused RESOURCE_EXHAUSTED")
	num(&c.MaxConcurrentStreams, "max-concurrent-streams", "concurrent calls per client connection")
	dur(&c.MaxStreamTime, "max-stream-time", "longest a streaming call (ExportEvidence, health Watch, reflection) may run; clients reconnect or resume")
	str(&c.NotificationsFile, "notifications", "webhook destinations file (YAML; see the README's Notifications section), reloaded on SIGHUP; empty delivers no notifications")
	boolean(&c.NotifyAllowPrivateNetworks, "notify-allow-private-networks", "let every webhook destination reach loopback and private addresses (per destination: allow_private_network)")
	num(&c.NotifyMaxAttempts, "notify-max-attempts", "failed attempts after which a notification is dead-lettered")
	dur(&c.NotifyBackoff, "notify-backoff", "wait after a notification's first failed attempt, doubled after each (with jitter)")
	dur(&c.NotifyBackoffMax, "notify-backoff-max", "longest wait between attempts of a notification")
	dur(&c.NotifyTimeout, "notify-timeout", "longest one webhook request may take, connection included")
	dur(&c.NotifyLease, "notify-lease", "how long a replica's claim on a notification holds; must outlast its requests to every destination")
	dur(&c.NotifyPoll, "notify-poll", "how often each replica looks for notifications to deliver")
	dur(&c.NotifyRetention, "notify-retention", "how long delivered and dead-lettered notifications are kept")
	return configFile
}

// envNote names a flag's environment variable in its help.
func envNote(flagName string) string { return " (env " + envName(flagName) + ")" }

func envName(flagName string) string {
	return "AGATE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyLayers sets every flag not given on the command line from its AGATE_* variable,
// else from the config file: flags win over the environment, which wins over the file.
// The config file may come from --config or AGATE_CONFIG.
func applyLayers(fs *flag.FlagSet, configFile string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if v, ok := os.LookupEnv(envName("config")); ok && !given["config"] {
		configFile = v
	}
	fromFile := map[string]string{}
	if configFile != "" {
		var err error
		if fromFile, err = readConfigFile(fs, configFile); err != nil {
			return err
		}
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || f.Name == "config" {
			return
		}
		env := envName(f.Name)
		if v, ok := os.LookupEnv(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
			return
		}
		if v, ok := fromFile[f.Name]; ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("--config %s: %s: %w", configFile, f.Name, err))
			}
		}
	})
	return errors.Join(errs...)
}

// readConfigFile reads a YAML mapping of flag names to scalar values. An unknown key is
// an error: a misspelt setting must not be silently ignored.
func readConfigFile(fs *flag.FlagSet, path string) (map[string]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("--config %s: %w", path, err)
	}
	out := map[string]string{}
	if len(doc.Content) == 0 {
		return out, nil
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("--config %s: line %d: want a mapping of flag names to values", path, m.Line)
	}
	var errs []error
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		switch {
		case k.Value == "config" || fs.Lookup(k.Value) == nil:
			errs = append(errs, fmt.Errorf("--config %s: line %d: unknown key %q (keys are agate serve's flag names)", path, k.Line, k.Value))
		case v.Kind != yaml.ScalarNode:
			errs = append(errs, fmt.Errorf("--config %s: line %d: %s: want a single value", path, v.Line, k.Value))
		default:
			if _, dup := out[k.Value]; dup {
				errs = append(errs, fmt.Errorf("--config %s: line %d: %s is set twice", path, k.Line, k.Value))
			}
			out[k.Value] = v.Value
		}
	}
	return out, errors.Join(errs...)
}

// parseFlags parses args: -h or --help prints the flags and ends the command with
// status 0, a bad flag prints the error and the flags and ends it with status 2.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		return exitError(0)
	default: // the flag package has printed it; the error still names the flag for callers
		return fmt.Errorf("%w: %w", exitError(2), err)
	}
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
	if c.AuthZENAddr != "" {
		addr("authzen-addr", c.AuthZENAddr)
	}
	if c.HTTPAPIAddr != "" {
		addr("http-api-addr", c.HTTPAPIAddr)
	}
	if c.AuthZENURL != "" {
		if c.AuthZENAddr == "" {
			errs = append(errs, errors.New("--authzen-url: needs --authzen-addr"))
		}
		if _, err := authzen.ParseBaseURL(c.AuthZENURL); err != nil {
			errs = append(errs, fmt.Errorf("--authzen-url: %w", err))
		}
	}
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
		"seal-interval": c.SealInterval, "evidence-settle": c.EvidenceSettle, "max-stream-time": c.MaxStreamTime,
		"max-clock-skew": c.MaxClockSkew, "notify-backoff": c.NotifyBackoff, "notify-backoff-max": c.NotifyBackoffMax,
		"notify-timeout": c.NotifyTimeout, "notify-lease": c.NotifyLease, "notify-poll": c.NotifyPoll,
		"notify-retention": c.NotifyRetention, "expiry-interval": c.ExpiryInterval} {
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
	if c.NotifyMaxAttempts <= 0 {
		errs = append(errs, errors.New("--notify-max-attempts: must be positive"))
	}
	if c.NotifyLease <= c.NotifyTimeout {
		errs = append(errs, errors.New("--notify-lease: must be longer than --notify-timeout"))
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
