package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agate-pdp/agate/notify"
	"github.com/agate-pdp/agate/store"
)

// loadDestinations reads --notifications before anything touches the database. The log
// names each destination and its host, never its URL or secrets.
func (c serveConfig) loadDestinations(log *slog.Logger) ([]*notify.Destination, error) {
	if c.NotificationsFile == "" {
		return nil, nil
	}
	dests, err := notify.LoadFile(c.NotificationsFile)
	if err != nil {
		return nil, fmt.Errorf("--notifications: %w", err)
	}
	if c.NotifyLease <= c.NotifyTimeout*time.Duration(len(dests)) {
		return nil, fmt.Errorf("--notify-lease: %s must be longer than --notify-timeout (%s) times the %d destinations", c.NotifyLease, c.NotifyTimeout, len(dests))
	}
	names := make([]string, len(dests))
	for i, d := range dests {
		names[i] = d.String()
	}
	log.Info("notification destinations loaded", "file", c.NotificationsFile, "destinations", names)
	return dests, nil
}

// newDeliverer is this replica's deliverer of the notification outbox.
func (c serveConfig) newDeliverer(st store.Store, dests []*notify.Destination, reg prometheus.Registerer, log *slog.Logger) (*notify.Deliverer, error) {
	return notify.New(notify.Config{Store: st, Destinations: dests, AllowPrivateNetworks: c.NotifyAllowPrivateNetworks,
		MaxAttempts: c.NotifyMaxAttempts, Backoff: c.NotifyBackoff, MaxBackoff: c.NotifyBackoffMax,
		Timeout: c.NotifyTimeout, Lease: c.NotifyLease, Poll: c.NotifyPoll, Retention: c.NotifyRetention,
		Log: log, Registerer: reg})
}

const notificationsUsage = `usage:
  agate notifications dead-letter [--db DB] [--limit N] [--json]
      list the notifications that failed --notify-max-attempts times, oldest first, with
      the destinations that did receive them and the last error
  agate notifications requeue [--db DB] (--all | ID...)
      make dead-lettered notifications pending again, due now: a running replica sends
      them to the destinations that have not received them

--db defaults to $AGATE_DB; --db-password-file FILE supplies a PostgreSQL password, so
that neither has to appear in the command line.
`

func runNotifications(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, notificationsUsage)
		return exitError(2)
	}
	switch args[0] {
	case "dead-letter":
		return notificationsDeadLetter(ctx, args[1:], stdout, stderr)
	case "requeue":
		return notificationsRequeue(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, notificationsUsage)
		return nil
	default:
		fmt.Fprint(stderr, notificationsUsage)
		return exitError(2)
	}
}

// deadLetter is one dead-lettered notification as the CLI prints it.
type deadLetter struct {
	ID          string   `json:"id"`
	JobID       string   `json:"job_id"`
	Kind        string   `json:"kind"`
	CreatedAt   string   `json:"created_at"`
	DeadAt      string   `json:"dead_at"`
	Attempts    int      `json:"attempts"`
	DeliveredTo []string `json:"delivered_to"`
	LastError   string   `json:"last_error"`
}

func notificationsDeadLetter(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("agate notifications dead-letter", flag.ContinueOnError)
	flags.SetOutput(stderr)
	db, pwFile := outboxDBFlags(flags)
	limit := flags.Int("limit", 100, "most notifications listed")
	asJSON := flags.Bool("json", false, "print one JSON object a line")
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	switch {
	case flags.NArg() > 0:
		fmt.Fprintf(stderr, "unexpected arguments: %s\n%s", strings.Join(flags.Args(), " "), notificationsUsage)
		return exitError(2)
	case *db == "":
		fmt.Fprintf(stderr, "--db is required\n%s", notificationsUsage)
		return exitError(2)
	case *limit <= 0:
		fmt.Fprintf(stderr, "--limit must be positive\n%s", notificationsUsage)
		return exitError(2)
	}
	var ns []store.Notification
	err := withOutbox(ctx, *db, *pwFile, func(ctx context.Context, st store.Store) error {
		return st.Read(ctx, func(ctx context.Context, tx store.Tx) (err error) {
			ns, err = tx.ListNotifications(ctx, store.NotificationQuery{State: store.NotificationDead, Limit: *limit})
			return err
		})
	})
	if err != nil {
		return err
	}
	ts := func(us int64) string { return time.UnixMicro(us).UTC().Format(time.RFC3339) }
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, n := range ns {
			if err := enc.Encode(deadLetter{ID: n.ID, JobID: n.JobID, Kind: n.Kind, CreatedAt: ts(n.CreatedAt),
				DeadAt: ts(n.DoneAt), Attempts: n.Attempts, DeliveredTo: append([]string{}, n.DeliveredTo...), LastError: n.LastError}); err != nil {
				return err
			}
		}
		return nil
	}
	if len(ns) == 0 {
		fmt.Fprintln(stdout, "no dead-lettered notifications")
		return nil
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tJOB\tKIND\tDEAD AT\tATTEMPTS\tDELIVERED TO\tLAST ERROR")
	for _, n := range ns {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", n.ID, n.JobID, n.Kind, ts(n.DoneAt), n.Attempts,
			strings.Join(n.DeliveredTo, ","), n.LastError)
	}
	return w.Flush()
}

// outboxDBFlags are the database flags of the notifications commands.
func outboxDBFlags(flags *flag.FlagSet) (db, passwordFile *string) {
	db = flags.String("db", os.Getenv("AGATE_DB"), "database: a SQLite file path, or a postgres:// / postgresql:// URL (default $AGATE_DB)")
	passwordFile = flags.String("db-password-file", "", "file holding the PostgreSQL password")
	return db, passwordFile
}

// withOutbox opens the database for a notifications command and runs fn on it, all
// within 30 s.
func withOutbox(ctx context.Context, db, passwordFile string, fn func(context.Context, store.Store) error) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	password, err := readPasswordFile(passwordFile, log)
	if err != nil {
		return fmt.Errorf("--db-password-file: %w", err)
	}
	st, err := openStore(ctx, db, password, log, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(ctx, st)
}

func notificationsRequeue(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("agate notifications requeue", flag.ContinueOnError)
	flags.SetOutput(stderr)
	db, pwFile := outboxDBFlags(flags)
	all := flags.Bool("all", false, "requeue every dead-lettered notification")
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	ids := flags.Args()
	switch {
	case *db == "":
		fmt.Fprintf(stderr, "--db (or $AGATE_DB) is required\n%s", notificationsUsage)
		return exitError(2)
	case *all == (len(ids) > 0):
		fmt.Fprintf(stderr, "name the notifications to requeue, or --all, not both\n%s", notificationsUsage)
		return exitError(2)
	}
	for _, id := range ids {
		if id == "" || len(id) > 128 || strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r > '~' }) {
			fmt.Fprintf(stderr, "notification id %q: want printable ASCII, 1 to 128 characters\n", id)
			return exitError(2)
		}
	}
	var n int
	err := withOutbox(ctx, *db, *pwFile, func(ctx context.Context, st store.Store) error {
		return st.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) (err error) {
			n, err = tx.RequeueNotifications(ctx, ids, time.Now().UnixMicro())
			return err
		})
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "requeued %d notification(s)\n", n)
	if len(ids) > 0 && n < len(ids) {
		fmt.Fprintf(stderr, "%d of the named notifications were not dead-lettered (or do not exist): left as they were\n", len(ids)-n)
	}
	return nil
}
