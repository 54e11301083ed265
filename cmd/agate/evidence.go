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
)

const evidenceUsage = `usage:
  agate evidence verify --public-key KEY... (--db DB | --file EXPORT) [--witness FILE...]
                        [--original EXPORT] [--since µs] [--until µs] [--legacy]
      verify the evidence in a database, or an ExportEvidence file ("-" for stdin), against
      the pinned checkpoint keys (each a PEM file, or the key's 64 hex digits; repeat the
      flag to pin several) and, with --witness, against the checkpoints witness files
      hold; --original names an earlier export kept elsewhere, to pin a change to the
      exact event. Exit status 1 when anything was modified, deleted, inserted or
      reordered, or an export lacks a checkpoint its signed manifest names or a chain its
      checkpoints seal; --legacy accepts exports made before manifests were signed
  agate evidence public-key [--evidence-key FILE | --db DB]
      print the public half of the checkpoint signing key, for pinning
  agate evidence keygen --out FILE
      create a new checkpoint signing key (mode 0600) to give every replica, or to
      rotate to; never replaces an existing file
`

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
	case "keygen":
		return evidenceKeygen(args[1:], stdout, stderr)
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
	var pinned, witnesses []string
	flags.Func("public-key", "a pinned checkpoint key: a PEM file, or its 64 hex digits (repeatable)", func(v string) error {
		pinned = append(pinned, v)
		return nil
	})
	flags.Func("witness", "a witness file the replicas appended their checkpoints to (repeatable)", func(v string) error {
		witnesses = append(witnesses, v)
		return nil
	})
	original := flags.String("original", "", "an earlier export of the same evidence, kept elsewhere, to name the exact event changed")
	since := flags.Int64("since", 0, "with --db: only chains with an event at or after this time (µs)")
	until := flags.Int64("until", 0, "with --db: only chains with an event before this time (µs)")
	legacy := flags.Bool("legacy", false, "accept an export made before its manifest was signed (or before it had one), without proving it complete")
	skew := flags.Duration("max-clock-skew", audit.DefaultMaxClockSkew, "the --max-clock-skew the replicas ran with")
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	switch {
	case flags.NArg() > 0:
		return usageError(stderr, "unexpected arguments: %s", strings.Join(flags.Args(), " "))
	case (*db == "") == (*file == ""):
		return usageError(stderr, "give exactly one of --db and --file")
	case len(pinned) == 0:
		return usageError(stderr, "--public-key is required: verification is only as good as the key it trusts")
	case *file != "" && (*since != 0 || *until != 0):
		return usageError(stderr, "--since and --until apply to --db only")
	case *skew <= 0:
		return usageError(stderr, "--max-clock-skew must be positive")
	}
	trust := audit.Trust{MaxClockSkew: *skew}
	for _, k := range pinned {
		pub, err := readPublicKey(k)
		if err != nil {
			return fmt.Errorf("--public-key %s: %w", k, err)
		}
		trust.Keys = append(trust.Keys, pub)
	}
	for _, w := range witnesses {
		cps, err := audit.ReadWitnessFile(w)
		if err != nil {
			return fmt.Errorf("--witness: %w", err)
		}
		trust.Witnessed = append(trust.Witnessed, cps...)
	}
	if *original != "" {
		exp, err := readExportFile(*original, "--original")
		if err != nil {
			return err
		}
		trust.Originals = exp.Events
	}
	var rep audit.Report
	var err error
	if *file != "" {
		rep, err = verifyFile(*file, trust, *legacy, stderr)
	} else {
		rep, err = verifyDB(ctx, *db, trust, audit.Window{Since: *since, Until: *until})
	}
	if err != nil {
		return err
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(stdout, problemLine(p))
	}
	counts := fmt.Sprintf("%d events in %d chains, %d checkpoints", rep.EventsVerified, rep.ChainsVerified, rep.CheckpointsVerified)
	if len(witnesses) > 0 {
		counts += fmt.Sprintf(", %d witness records", rep.WitnessedVerified)
	}
	if !rep.OK() {
		fmt.Fprintf(stdout, "FAILED: %d problems; verified %s\n", len(rep.Problems), counts)
		return exitError(1)
	}
	fmt.Fprintf(stdout, "ok: verified %s\n", counts)
	return nil
}

func readExportFile(path, flagName string) (audit.Export, error) {
	r := io.Reader(os.Stdin)
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return audit.Export{}, fmt.Errorf("%s: %w", flagName, err)
		}
		defer f.Close()
		r = f
	}
	exp, err := server.ReadExport(r)
	if err != nil {
		return audit.Export{}, fmt.Errorf("%s %s: %w", flagName, path, err)
	}
	return exp, nil
}

func verifyFile(path string, trust audit.Trust, legacy bool, stderr io.Writer) (audit.Report, error) {
	exp, err := readExportFile(path, "--file")
	if err != nil {
		return audit.Report{}, err
	}
	switch {
	case !legacy:
	case exp.Manifest == nil:
		fmt.Fprintln(stderr, "note: an export made before exports carried a manifest: its integrity is verified, its completeness is not")
	case len(exp.Manifest.Signature) == 0:
		fmt.Fprintln(stderr, "note: an export made before manifests were signed: its integrity is verified, its completeness is not proven")
	}
	return audit.VerifyExport(trust, exp, legacy), nil
}

func verifyDB(ctx context.Context, db string, trust audit.Trust, w audit.Window) (audit.Report, error) {
	// A command, unlike the server, does not wait long for a database that is down.
	octx, cancel := context.WithTimeout(ctx, 15*time.Second)
	st, err := openStore(octx, db, "", slog.New(slog.DiscardHandler), nil)
	cancel()
	if err != nil {
		return audit.Report{}, fmt.Errorf("--db: %w", err)
	}
	defer st.Close()
	a, err := audit.New(audit.Config{Store: st, PublicKey: trust.Keys[0]})
	if err != nil {
		return audit.Report{}, err
	}
	return a.VerifyWith(ctx, w, trust)
}

// problemLine prints a problem as "kind where: detail", where is job=… seq=… event=…,
// checkpoint=… seq=…, or manifest.
func problemLine(p audit.Problem) string {
	parts := []string{string(p.Kind)}
	switch {
	case p.JobID != "":
		parts = append(parts, "job="+p.JobID)
	case p.CheckpointID != "":
		parts = append(parts, "checkpoint="+p.CheckpointID)
	case p.Seq == 0: // no checkpoint has seq 0: the problem is the export's manifest
		parts = append(parts, "manifest")
	default:
		parts = append(parts, "checkpoint")
	}
	if p.Seq != 0 {
		parts = append(parts, fmt.Sprintf("seq=%d", p.Seq))
	}
	if p.EventID != "" {
		parts = append(parts, "event="+p.EventID)
	}
	if p.SpanTo > 0 {
		parts = append(parts, fmt.Sprintf("span=%d-%d", p.SpanFrom, p.SpanTo))
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
	if path == "" {
		return usageError(stderr, "--evidence-key is required with a database server")
	}
	// Never create a key here: a fresh one would not be the key that signed anything.
	key, err := evidence.LoadKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no evidence key at %s (agate serve creates it on first start)", path)
	}
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

func evidenceKeygen(args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("agate evidence keygen", flag.ContinueOnError)
	flags.SetOutput(stderr)
	out := flags.String("out", "", "the key file to create")
	if err := flags.Parse(args); err != nil {
		return exitError(2)
	}
	if *out == "" || flags.NArg() > 0 {
		return usageError(stderr, "give --out FILE and nothing else")
	}
	key, err := evidence.CreateKey(*out)
	if err != nil {
		return err
	}
	pub, _ := key.Public().(ed25519.PublicKey)
	fmt.Fprintf(stdout, "created %s (key_id %s): give every replica this file, keep it out of the database, and pin its public key\n",
		*out, evidence.KeyID(pub))
	return nil
}
