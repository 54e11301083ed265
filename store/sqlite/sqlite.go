package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/sqlstore"
)

// Options tune the embedded store; the zero value is the default.
type Options struct {
	// MaxAttempts bounds how often a transaction runs before ErrBusy (default 10).
	MaxAttempts int
	// BusyTimeout is how long a statement waits for another process's lock on the file
	// before the attempt fails and is retried (default 5 s).
	BusyTimeout time.Duration
	// ReadConns is the size of the read-only pool (default 4).
	ReadConns int
	// Logger receives the store's log lines (default: discarded).
	Logger *slog.Logger
	// Tracer makes a span of each transaction (default: none).
	Tracer trace.TracerProvider
}

// tracerName is the instrumentation scope of the store's spans.
const tracerName = "github.com/agate-pdp/agate/store/sqlite"

// Store is the SQLite store.Store.
type Store struct {
	w, r        *sql.DB // one writer connection; a pool of read-only ones
	maxAttempts int
	log         *slog.Logger
	tracer      trace.Tracer
	clock       sqlstore.Clock // the database's clock, as the last active-snapshot read saw it
}

var _ store.Store = (*Store)(nil)

// Open opens (creating it and its directory when missing) the database file at path
// and brings its schema up to date.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if path == "" || strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("store: sqlite path %q must be a file name without '?'", path)
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 5 * time.Second
	}
	if opts.ReadConns <= 0 {
		opts.ReadConns = 4
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	busy := strconv.FormatInt(opts.BusyTimeout.Milliseconds(), 10)
	// One writer: transactions queue in the pool instead of spinning on the file lock;
	// other processes sharing the file still meet busy_timeout and the retry loop.
	w, err := openDB(path, 1, url.Values{
		"_busy_timeout": {busy}, "_journal_mode": {"WAL"}, "_synchronous": {"FULL"},
		"_foreign_keys": {"1"}, "_txlock": {"immediate"},
	})
	if err != nil {
		return nil, err
	}
	if opts.Tracer == nil {
		opts.Tracer = noop.NewTracerProvider()
	}
	s := &Store{w: w, maxAttempts: opts.MaxAttempts, log: opts.Logger, tracer: opts.Tracer.Tracer(tracerName)}
	if err := dialect.Migrate(ctx, opts.Logger, s.migrationTx); err != nil {
		_ = w.Close()
		return nil, err
	}
	s.r, err = openDB(path, opts.ReadConns, url.Values{
		"_busy_timeout": {busy}, "_foreign_keys": {"1"}, "_query_only": {"1"},
	})
	if err != nil {
		_ = w.Close()
		return nil, err
	}
	if err := s.Ping(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	s.log.Info("store opened", "backend", "sqlite", "path", path)
	return s, nil
}

func openDB(path string, conns int, params url.Values) (*sql.DB, error) {
	db, err := sql.Open("sqlite", path+"?"+params.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: sqlite %s: %w", path, err)
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	db.SetConnMaxIdleTime(0)
	return db, nil
}

func (s *Store) migrationTx(ctx context.Context, fn func(q sqlstore.Querier) error) error {
	return s.inTx(ctx, s.w, nil, func(tx *sql.Tx) error { return fn(sqlstore.StdQuerier(tx)) })
}

// inTx runs fn in one transaction on db and commits it; driver errors come back mapped,
// fn's own as they are.
func (s *Store) inTx(ctx context.Context, db *sql.DB, opts *sql.TxOptions, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return dialect.MapError(err)
	}
	defer func() { _ = tx.Rollback() }() // no-op after Commit; runs on panic too
	if err := fn(tx); err != nil {
		return err
	}
	return dialect.MapError(tx.Commit())
}

// ReadWrite implements store.Store. There is one writer connection, so fn must not call
// ReadWrite itself: the inner call would wait for the outer one until ctx ends.
func (s *Store) ReadWrite(ctx context.Context, fn func(ctx context.Context, tx store.Tx) error) error {
	return dialect.Traced(ctx, s.tracer, "store.ReadWrite", func(ctx context.Context) error {
		return dialect.Run(ctx, s.maxAttempts, func(ctx context.Context) error {
			return s.inTx(ctx, s.w, nil, func(tx *sql.Tx) error {
				return fn(ctx, sqlstore.NewTx(sqlstore.StdQuerier(tx), dialect))
			})
		})
	})
}

// Read implements store.Store. Its connections are query_only: a write fails.
func (s *Store) Read(ctx context.Context, fn func(ctx context.Context, tx store.Tx) error) error {
	return dialect.Traced(ctx, s.tracer, "store.Read", func(ctx context.Context) error {
		return dialect.Run(ctx, s.maxAttempts, func(ctx context.Context) error {
			return s.inTx(ctx, s.r, &sql.TxOptions{ReadOnly: true}, func(tx *sql.Tx) error {
				return fn(ctx, sqlstore.NewTx(sqlstore.StdQuerier(tx), dialect))
			})
		})
	})
}

// ActiveSnapshot implements snapshots.Source.
func (s *Store) ActiveSnapshot(ctx context.Context) (snapshots.Snapshot, error) {
	return sqlstore.ActiveSnapshot(ctx, s.Read, &s.clock)
}

// LastClockSample implements store.ClockReader.
func (s *Store) LastClockSample() (store.ClockSample, bool) { return s.clock.LastClockSample() }

// Ping implements store.Store. It uses the read pool, so a health check never queues
// behind a write.
func (s *Store) Ping(ctx context.Context) error {
	return sqlstore.PingError(ctx, s.r.PingContext(ctx))
}

// Close implements store.Store.
func (s *Store) Close() error {
	var errs []error
	for _, db := range []*sql.DB{s.r, s.w} {
		if db != nil {
			errs = append(errs, db.Close())
		}
	}
	return errors.Join(errs...)
}
