package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type config struct {
	Agate   string // the agate binary
	DB      string // agate's database URL
	Monitor string // the same database, as a role whose statements are not counted
	Root    string // the repository (examples/)
	Work    string // key file and logs
	N       int    // calls per phase
	Verbose bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dbwork:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	var cfg config
	fs := flag.NewFlagSet("dbwork", flag.ContinueOnError)
	fs.StringVar(&cfg.Agate, "agate", "", "the agate binary")
	fs.StringVar(&cfg.DB, "db", "", "agate's postgres:// URL")
	fs.StringVar(&cfg.Monitor, "monitor", "", "postgres:// URL of the same database as a superuser role agate does not use")
	fs.StringVar(&cfg.Root, "root", "..", "the repository's root (for examples/)")
	fs.StringVar(&cfg.Work, "work", os.TempDir(), "directory for the evidence key and agate's logs")
	fs.IntVar(&cfg.N, "n", 2000, "calls per phase")
	fs.BoolVar(&cfg.Verbose, "v", false, "also print every phase's statements")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.Agate == "" || cfg.DB == "" || cfg.Monitor == "" || cfg.N < 1 {
		return errors.New("-agate, -db and -monitor are required, -n positive")
	}
	m, err := newMonitor(ctx, cfg.Monitor)
	if err != nil {
		return err
	}
	defer m.conn.Close(context.Background())
	var phases []result

	// Group commit off: one transaction per Decide.
	a, err := startAgate(ctx, cfg, "unbatched", append([]string{"--decide-batch-max", "1"}, quiet...)...)
	if err != nil {
		return err
	}
	if err := m.loadIndexes(ctx); err != nil {
		a.stop()
		return err
	}
	r, err := measure(ctx, m, a.addr, "Decide (allow), group commit off", 16, func(ctx context.Context, d *driver) (int, error) {
		_, err := d.decide(ctx, "u", cfg.N, false)
		return cfg.N, err
	})
	a.stop()
	if err != nil {
		return err
	}
	phases = append(phases, r)

	// Group commit on (the default), then the lifecycle of jobs that need an approval.
	if a, err = startAgate(ctx, cfg, "batched", quiet...); err != nil {
		return err
	}
	if err := m.waitSealed(ctx); err != nil {
		a.stop()
		return err
	}
	var pending []job
	steps := []struct {
		name    string
		clients int
		fn      func(ctx context.Context, d *driver) (int, error)
	}{
		{"Decide (allow), 1 client", 1, func(ctx context.Context, d *driver) (int, error) {
			_, err := d.decide(ctx, "b1", cfg.N, false)
			return cfg.N, err
		}},
		{"Decide (allow), 64 clients", 64, func(ctx context.Context, d *driver) (int, error) {
			_, err := d.decide(ctx, "b64", cfg.N, false)
			return cfg.N, err
		}},
		{"Decide (require_human), 64 clients", 64, func(ctx context.Context, d *driver) (n int, err error) {
			pending, err = d.decide(ctx, "p", cfg.N, true)
			return cfg.N, err
		}},
		{"Approve, 16 clients", 16, func(ctx context.Context, d *driver) (int, error) { return len(pending), d.approve(ctx, pending) }},
		{"Publish, 16 clients", 16, func(ctx context.Context, d *driver) (int, error) { return len(pending), d.publish(ctx, pending) }},
		{"ReportOutcome, 16 clients", 16, func(ctx context.Context, d *driver) (int, error) { return len(pending), d.outcome(ctx, pending) }},
	}
	for _, s := range steps {
		r, err := measure(ctx, m, a.addr, s.name, s.clients, s.fn)
		if err != nil {
			a.stop()
			return err
		}
		phases = append(phases, r)
	}
	a.stop()

	// Sealing: a replica seals at start; count what the sealer did for the chains above.
	r, err = measureSeal(ctx, cfg, m)
	if err != nil {
		return err
	}
	phases = append(phases, r)
	report(out, cfg, phases)
	return nil
}

// result is one phase's work.
type result struct {
	name     string
	clients  int
	ops      int
	elapsed  time.Duration
	stmts    []stmtDelta
	kv       []kvChange
	wal      int64
	sealOnly bool // statements are the sealer's only (agate's start-up is not counted)
}

func measure(ctx context.Context, m *monitor, addr, name string, clients int, fn func(context.Context, *driver) (int, error)) (result, error) {
	d, err := newDriver(addr, clients)
	if err != nil {
		return result{}, err
	}
	defer d.close()
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), name)
	before, err := m.snapshot(ctx)
	if err != nil {
		return result{}, err
	}
	start := time.Now()
	n, err := fn(ctx, d)
	elapsed := time.Since(start)
	if err != nil {
		return result{}, fmt.Errorf("%s: %w", name, err)
	}
	after, err := m.snapshot(ctx)
	if err != nil {
		return result{}, err
	}
	wal, err := m.walBytes(ctx, before, after)
	if err != nil {
		return result{}, err
	}
	return result{name: name, clients: clients, ops: n, elapsed: elapsed, stmts: stmtDiff(before, after),
		kv: m.diff(before, after), wal: wal}, nil
}

// sealer tells the sealer's statements from agate's start-up: they read or write the
// checkpoint tables, or read whole chains to verify them.
func sealer(query string) bool {
	q := strings.ToLower(query)
	return strings.Contains(q, "checkpoint") || strings.Contains(q, "order by job_id, seq")
}

func measureSeal(ctx context.Context, cfg config, m *monitor) (result, error) {
	fmt.Fprintf(os.Stderr, "%s  sealing\n", time.Now().Format("15:04:05"))
	before, err := m.snapshot(ctx)
	if err != nil {
		return result{}, err
	}
	start := time.Now()
	a, err := startAgate(ctx, cfg, "seal", quiet...)
	if err != nil {
		return result{}, err
	}
	defer a.stop()
	if err := m.waitSealed(ctx); err != nil {
		return result{}, err
	}
	elapsed := time.Since(start)
	after, err := m.snapshot(ctx)
	if err != nil {
		return result{}, err
	}
	r := result{name: "Seal (per chain sealed)", ops: 0, elapsed: elapsed, kv: m.diff(before, after), sealOnly: true}
	for _, s := range stmtDiff(before, after) {
		if sealer(s.query) {
			r.stmts = append(r.stmts, s)
			r.wal += int64(s.walBytes)
		}
	}
	for _, c := range r.kv {
		if c.ix.table == "checkpoint_heads" && c.ix.primary {
			r.ops = int(c.added)
		}
	}
	if r.ops == 0 {
		return r, errors.New("the sealer sealed no chain")
	}
	return r, nil
}

// waitSealed waits until every chain's head is sealed: a replica seals at start, and
// that must not fall into a measured phase.
func (m *monitor) waitSealed(ctx context.Context) error {
	start := time.Now()
	for {
		var unsealed int
		if err := m.conn.QueryRow(ctx, `SELECT COUNT(*) FROM evidence e
			WHERE NOT EXISTS (SELECT 1 FROM evidence n WHERE n.job_id = e.job_id AND n.seq > e.seq)
			AND NOT EXISTS (SELECT 1 FROM checkpoint_heads h WHERE h.job_id = e.job_id AND h.seq >= e.seq)`).Scan(&unsealed); err != nil {
			return err
		}
		if unsealed == 0 {
			return nil
		}
		if time.Since(start) > 2*time.Minute {
			return fmt.Errorf("%d chains still unsealed after 2 minutes", unsealed)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
