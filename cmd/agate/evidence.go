package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/agate-pdp/agate/audit"
	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/server"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
)

const evidenceUsage = `usage:
  agate evidence verify --public-key KEY (--db DB | --file EXPORT) [--since µs] [--until µs]
      verify the evidence in a database, or an ExportEvidence file ("-" for stdin), against
      the pinned checkpoint key (a PEM file, or the key's 64 hex digits); exit status 1
      when anything was modified, deleted, inserted or reordered
  agate evidence public-key [--evidence-key FILE | --db DB]
      print the public half of the checkpoint signing key, for pinning
`

// evidenceServices loads (creating it on first start) the checkpoint signing key and
// builds the audit service and this replica's sealer.
func evidenceServices(cfg serveConfig, st store.Store, cache *snapshots.Cache, log *slog.Logger) (*audit.Service, *audit.Sealer, error) {
	path := cfg.evidenceKeyPath()
	key, created, err := evidence.LoadOrCreateKey(path)
	if err != nil {
		return nil, nil, fmt.Errorf("--evidence-key: %w", err)
	}
	pub, _ := key.Public().(ed25519.PublicKey)
	if created {
		log.Warn("evidence signing key created: back it up, give every replica the same file, and pin its public key (agate evidence public-key)",
			"file", path, "key_id", evidence.KeyID(pub))
	} else {
		log.Info("evidence signing key loaded", "file", path, "key_id", evidence.KeyID(pub))
	}
	auditor, err := audit.New(audit.Config{Store: st, PublicKey: pub, Cache: cache, Settle: cfg.EvidenceSettle})
	if err != nil {
		return nil, nil, err
	}
	sealer, err := audit.NewSealer(audit.SealerConfig{Store: st, Key: key, Interval: cfg.SealInterval, Log: log})
	if err != nil {
		return nil, nil, err
	}
	return auditor, sealer, nil
}

func runEvidence(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, evidenceUsage)
		return exitError(2)
	}
	switch args[0] {
	case "verify":
		return evidenceVerify(ctx, args[1:], stdout, stderr)
	case "public-key":
		return evidencePublicKey(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, evidenceUsage)
		return nil
	default:
		fmt.Fprint(stderr, evidenceUsage)
		return exitError(2)
	}
}

// usageError prints the problem and the usage, and exits with status 2.
func usageError(stderr io.Writer, format string, args ...any) error {
	fmt.Fprintf(stderr, format+"\n%s", append(args, evidenceUsage)...)
	return exitError(2)
}

func evidenceVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("agate evidence verify", flag.ContinueOnError)
	flags.SetOutput(stderr)
	db := flags.String("db", "", "database: a SQLite file path, or a postgres:// / postgresql:// URL")
	file := flags.String("file", "", `ExportEvidence output, as grpcurl prints it ("-" for stdin)`)
	pinned := flags.String("public-key", "", "the pinned checkpoint key: a PEM file, or its 64 hex digits")
	since := flags.Int64("since", 0, "with --db: only chains with an event at or after this time (µs)")
	until := flags.Int64("until", 0, "with --db: only chains with an event before this time (µs)")
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	switch {
	case flags.NArg() > 0:
		return usageError(stderr, "unexpected arguments: %s", strings.Join(flags.Args(), " "))
	case (*db == "") == (*file == ""):
		return usageError(stderr, "give exactly one of --db and --file")
	case *pinned == "":
		return usageError(stderr, "--public-key is required: verification is only as good as the key it trusts")
	case *file != "" && (*since != 0 || *until != 0):
		return usageError(stderr, "--since and --until apply to --db only")
	}
	pub, err := readPublicKey(*pinned)
	if err != nil {
		return fmt.Errorf("--public-key: %w", err)
	}
	var rep audit.Report
	if *file != "" {
		rep, err = verifyFile(*file, pub)
	} else {
		rep, err = verifyDB(ctx, *db, pub, audit.Window{Since: *since, Until: *until})
	}
	if err != nil {
		return err
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(stdout, problemLine(p))
	}
	counts := fmt.Sprintf("%d events in %d chains, %d checkpoints", rep.EventsVerified, rep.ChainsVerified, rep.CheckpointsVerified)
	if !rep.OK() {
		fmt.Fprintf(stdout, "FAILED: %d problems; verified %s\n", len(rep.Problems), counts)
		return exitError(1)
	}
	fmt.Fprintf(stdout, "ok: verified %s\n", counts)
	return nil
}

func verifyFile(path string, pub ed25519.PublicKey) (audit.Report, error) {
	r := io.Reader(os.Stdin)
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return audit.Report{}, fmt.Errorf("--file: %w", err)
		}
		defer f.Close()
		r = f
	}
	events, cps, err := server.ReadExport(r)
	if err != nil {
		return audit.Report{}, fmt.Errorf("--file %s: %w", path, err)
	}
	return audit.VerifyExport(pub, events, cps), nil
}

func verifyDB(ctx context.Context, db string, pub ed25519.PublicKey, w audit.Window) (audit.Report, error) {
	// A command, unlike the server, does not wait long for a database that is down.
	octx, cancel := context.WithTimeout(ctx, 15*time.Second)
	st, err := openStore(octx, db, "", slog.New(slog.DiscardHandler), nil)
	cancel()
	if err != nil {
		return audit.Report{}, fmt.Errorf("--db: %w", err)
	}
	defer st.Close()
	a, err := audit.New(audit.Config{Store: st, PublicKey: pub})
	if err != nil {
		return audit.Report{}, err
	}
	return a.Verify(ctx, w)
}

// problemLine prints a problem as "kind where: detail", where is job=… seq=… event=…
// or checkpoint=… seq=….
func problemLine(p audit.Problem) string {
	parts := []string{string(p.Kind)}
	switch {
	case p.JobID != "":
		parts = append(parts, "job="+p.JobID)
	case p.CheckpointID != "":
		parts = append(parts, "checkpoint="+p.CheckpointID)
	default:
		parts = append(parts, "checkpoint")
	}
	parts = append(parts, fmt.Sprintf("seq=%d", p.Seq))
	if p.EventID != "" {
		parts = append(parts, "event="+p.EventID)
	}
	return strings.Join(parts, " ") + ": " + p.Detail
}

// readPublicKey reads a pinned key: 64 hex digits, or a file holding a PEM PUBLIC KEY.
func readPublicKey(v string) (ed25519.PublicKey, error) {
	if b, err := hex.DecodeString(v); err == nil && len(b) == ed25519.PublicKeySize {
		return ed25519.PublicKey(b), nil
	}
	data, err := os.ReadFile(v)
	if err != nil {
		return nil, err
	}
	return evidence.ParsePublicKey(data)
}

func evidencePublicKey(args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("agate evidence public-key", flag.ContinueOnError)
	flags.SetOutput(stderr)
	c := defaultServeConfig()
	if v, ok := os.LookupEnv("AGATE_DB"); ok {
		c.DB = v
	}
	c.EvidenceKey = os.Getenv("AGATE_EVIDENCE_KEY")
	flags.StringVar(&c.EvidenceKey, "evidence-key", c.EvidenceKey, "the signing key file, as given to agate serve (env AGATE_EVIDENCE_KEY)")
	flags.StringVar(&c.DB, "db", c.DB, "the database agate serve uses, to find the default key file (env AGATE_DB)")
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return usageError(stderr, "unexpected arguments: %s", strings.Join(flags.Args(), " "))
	}
	path := c.evidenceKeyPath()
	// Never create a key here: a fresh one would not be the key that signed anything.
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no evidence key at %s (agate serve creates it on first start)", path)
	}
	key, _, err := evidence.LoadOrCreateKey(path)
	if err != nil {
		return err
	}
	pub, _ := key.Public().(ed25519.PublicKey)
	pem, err := evidence.MarshalPublicKey(pub)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# key_id: %s\n# hex: %s\n%s", evidence.KeyID(pub), hex.EncodeToString(pub), pem)
	return nil
}
