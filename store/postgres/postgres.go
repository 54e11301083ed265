package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/sqlstore"
)

// Options tune the store; the zero value is the default.
type Options struct {
	// MaxAttempts bounds how often a transaction runs before ErrBusy (default 10).
	MaxAttempts int
	// MaxConns is the pool size (default: pool_max_conns from the URL, else pgxpool's).
	MaxConns int32
	// Logger receives the store's log lines (default: discarded).
	Logger *slog.Logger
	// Tracer makes a span of each transaction (default: none).
	Tracer trace.TracerProvider
	// Password, when set, is the database password, over the URL's, PGPASSWORD and
	// PGPASSFILE; it keeps the password out of the URL, the process's arguments and logs.
	Password string
}

// Store is the PostgreSQL and CockroachDB store.Store.
type Store struct {
	pool        *pgxpool.Pool
	maxAttempts int
	log         *slog.Logger
	tracer      trace.Tracer
	clock       sqlstore.Clock // the database's clock, as the last active-snapshot read saw it
}

var _ store.Store = (*Store)(nil)

var (
	writeTx     = pgx.TxOptions{IsoLevel: pgx.Serializable}
	readTx      = pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	migrationTx = pgx.TxOptions{IsoLevel: pgx.ReadCommitted} // sees migrations committed while it waited
)

// Open connects to the database at url (postgres:// or postgresql://, CockroachDB
// included) and brings its schema up to date. An unreachable database is
// ErrUnavailable.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("store: postgres url: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if opts.Password != "" {
		cfg.ConnConfig.Password = opts.Password
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: %w", err)
	}
	if opts.Tracer == nil {
		opts.Tracer = noop.NewTracerProvider()
	}
	s := &Store{pool: pool, maxAttempts: opts.MaxAttempts, log: opts.Logger,
		tracer: opts.Tracer.Tracer("github.com/agate-pdp/agate/store/postgres")}
	err = dialect.Migrate(ctx, opts.Logger, func(ctx context.Context, fn func(sqlstore.Querier) error) error {
		return pgx.BeginTxFunc(ctx, pool, migrationTx, func(tx pgx.Tx) error { return fn(querier{tx}) })
	})
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.log.Info("store opened", "backend", "postgres", "host", cfg.ConnConfig.Host,
		"port", cfg.ConnConfig.Port, "database", cfg.ConnConfig.Database)
	return s, nil
}

// ReadWrite implements store.Store: every attempt is a fresh SERIALIZABLE transaction.
// A connection lost at COMMIT is reported as ErrUnavailable, and then the transaction
// may or may not have committed; the writes built on this store are idempotent by key,
// so the caller's retry finds out.
func (s *Store) ReadWrite(ctx context.Context, fn func(ctx context.Context, tx store.Tx) error) error {
	return dialect.Traced(ctx, s.tracer, "store.ReadWrite", func(ctx context.Context) error { return s.run(ctx, writeTx, fn) })
}

// Read implements store.Store with a REPEATABLE READ READ ONLY transaction: a
// consistent snapshot that PostgreSQL never fails for serialization. CockroachDB may
// still ask for a retry, which the same loop handles.
func (s *Store) Read(ctx context.Context, fn func(ctx context.Context, tx store.Tx) error) error {
	return dialect.Traced(ctx, s.tracer, "store.Read", func(ctx context.Context) error { return s.run(ctx, readTx, fn) })
}

func (s *Store) run(ctx context.Context, opts pgx.TxOptions, fn func(context.Context, store.Tx) error) error {
	return dialect.Run(ctx, s.maxAttempts, func(ctx context.Context) error {
		var stx *sqlstore.Tx
		var fnErr error
		err := pgx.BeginTxFunc(ctx, s.pool, opts, func(tx pgx.Tx) error {
			stx = sqlstore.NewTx(querier{tx}, dialect)
			fnErr = fn(ctx, stx)
			return fnErr
		})
		switch {
		case err == nil:
			return nil
		case fnErr != nil && errors.Is(err, fnErr):
			return err // fn's own error, as it is
		case errors.Is(err, pgx.ErrTxCommitRollback) && stx != nil && stx.Failed() != nil:
			// fn swallowed an error that had aborted the transaction; report that one.
			return stx.Failed()
		}
		return dialect.MapError(err)
	})
}

// ActiveSnapshot implements snapshots.Source.
func (s *Store) ActiveSnapshot(ctx context.Context) (snapshots.Snapshot, error) {
	return sqlstore.ActiveSnapshot(ctx, s.Read, &s.clock)
}

// LastClockSample implements store.ClockReader.
func (s *Store) LastClockSample() (store.ClockSample, bool) { return s.clock.LastClockSample() }

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error {
	return sqlstore.PingError(ctx, s.pool.Ping(ctx))
}

// Close implements store.Store.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}
