package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agate-pdp/agate/store/postgres"
)

// The environment variables the harness reads.
const (
	EnvURL     = "AGATE_TEST_POSTGRES_URL"     // use this server instead of starting one
	EnvRequire = "AGATE_TEST_REQUIRE_POSTGRES" // "1": fail, never skip, without PostgreSQL
)

// server is the PostgreSQL every test of this binary uses.
type server struct {
	admin    *pgxpool.Pool // on the maintenance database
	url      *url.URL      // of the maintenance database
	prefix   string        // of every database this binary creates
	template string        // migrated database to copy; "" when copies are unsupported
	crdb     bool          // CockroachDB: no TEMPLATE, no DROP … WITH (FORCE)
	version  string
	where    string
	err      error
}

var (
	once   sync.Once
	srv    server
	logged atomic.Bool
	seq    atomic.Int64
)

func get(t testing.TB) *server {
	t.Helper()
	once.Do(func() { srv.err = srv.start() })
	if srv.err != nil {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("PostgreSQL is required (%s=1) but unavailable: %v", EnvRequire, srv.err)
		}
		t.Skipf("PostgreSQL unavailable (set %s, or install the server binaries): %v", EnvURL, srv.err)
	}
	if logged.CompareAndSwap(false, true) {
		t.Logf("database server: %s; at %s", srv.version, srv.where)
	}
	return &srv
}

func (s *server) start() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var b [6]byte
	_, _ = rand.Read(b[:])
	s.prefix = "agate_t" + hex.EncodeToString(b[:]) + "_"
	raw := os.Getenv(EnvURL)
	u, err := url.Parse(raw)
	if raw != "" {
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			return fmt.Errorf("%s must be a postgres:// URL", EnvURL)
		}
		if err := startWatchdog(watchSpec{AdminURL: raw, Prefix: s.prefix}); err != nil {
			return err
		}
		s.where = u.Host + " (" + EnvURL + ")"
	} else {
		var bin string
		if raw, bin, err = startCluster(); err != nil {
			return err
		}
		if u, err = url.Parse(raw); err != nil {
			return err
		}
		s.where = u.Host + " (throwaway cluster from " + bin + ")"
	}
	s.url = u
	if s.admin, err = pgxpool.New(ctx, raw); err != nil {
		return err
	}
	if err := s.admin.QueryRow(ctx, "SELECT version()").Scan(&s.version); err != nil {
		return fmt.Errorf("connecting to %s: %w", u.Redacted(), err)
	}
	if s.crdb = strings.Contains(s.version, "CockroachDB"); s.crdb {
		return nil // no CREATE DATABASE … TEMPLATE: each test database is migrated by Open
	}
	s.template = s.prefix + "template"
	if err := s.create(ctx, s.template, ""); err != nil {
		return err
	}
	st, err := postgres.Open(ctx, s.dbURL(s.template), postgres.Options{})
	if err != nil {
		return fmt.Errorf("migrating the template database: %w", err)
	}
	return st.Close()
}

func (s *server) create(ctx context.Context, name, template string) error {
	sql := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if template != "" {
		sql += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	if _, err := s.admin.Exec(ctx, sql); err != nil {
		return fmt.Errorf("creating database %s: %w", name, err)
	}
	return nil
}

func (s *server) dbURL(name string) string {
	u := *s.url
	u.Path = "/" + name
	return u.String()
}

// newDatabase creates a database dropped when t ends; migrated says whether it is a
// copy of the migrated template or empty.
func newDatabase(t testing.TB, migrated bool) string {
	t.Helper()
	s := get(t)
	name := fmt.Sprintf("%s%d", s.prefix, seq.Add(1))
	tmpl := "template0"
	if migrated && s.template != "" {
		tmpl = s.template
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.create(ctx, name, tmpl); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := s.admin.Exec(ctx, dropSQL(name, s.crdb)); err != nil {
			t.Errorf("dropping database %s: %v", name, err)
		}
	})
	return s.dbURL(name)
}

// URL returns the URL of a new database holding the current schema, dropped when t
// ends. A missing PostgreSQL skips t (or fails it, see EnvRequire).
func URL(t testing.TB) string { return newDatabase(t, true) }

// EmptyURL returns the URL of a new database without any schema, dropped when t ends.
func EmptyURL(t testing.TB) string { return newDatabase(t, false) }

// Open returns a store on a new database, closed when t ends.
func Open(t testing.TB) *postgres.Store {
	t.Helper()
	return OpenURL(t, URL(t), postgres.Options{MaxConns: 16})
}

// OpenURL opens a store on url with opts, closed when t ends.
func OpenURL(t testing.TB, url string, opts postgres.Options) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := postgres.Open(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func dropSQL(name string, crdb bool) string {
	sql := "DROP DATABASE IF EXISTS " + pgx.Identifier{name}.Sanitize()
	if crdb {
		return sql + " CASCADE"
	}
	return sql + " WITH (FORCE)" // ends the sessions a failed test left behind
}
