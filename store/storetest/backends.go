package storetest

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/postgres"
	"github.com/agate-pdp/agate/store/postgres/pgtest"
	"github.com/agate-pdp/agate/store/sqlite"
)

// Opener returns a new, empty, migrated store, closed when t ends.
type Opener func(t *testing.T) store.Store

// OpenSQLite returns a store on a new SQLite file in t's temporary directory.
func OpenSQLite(t *testing.T) store.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "agate.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// OpenPostgres returns a store on a new PostgreSQL database (see package pgtest: it is
// skipped, or fails under AGATE_TEST_REQUIRE_POSTGRES=1, when PostgreSQL is missing).
func OpenPostgres(t *testing.T) store.Store {
	t.Helper()
	return pgtest.Open(t)
}

// Backends returns an Opener for each backend, by name.
func Backends() map[string]Opener {
	return map[string]Opener{"sqlite": OpenSQLite, "postgres": OpenPostgres}
}

// ForEachBackend runs fn as one subtest per backend ("postgres", "sqlite"), each with a
// fresh store. fn may call t.Parallel.
func ForEachBackend(t *testing.T, fn func(t *testing.T, s store.Store)) {
	t.Helper()
	b := Backends()
	names := make([]string, 0, len(b))
	for name := range b {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) { fn(t, b[name](t)) })
	}
}

// ReplicaOpener returns n stores on one new, migrated database, as n replicas of one
// deployment hold; each is closed when t ends.
type ReplicaOpener func(t *testing.T, n int) []store.Store

// SQLiteReplicas opens n stores on one new SQLite file: separate connection pools, so
// their write transactions exclude each other through the file's lock, as separate
// processes' would.
func SQLiteReplicas(t *testing.T, n int) []store.Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agate.db")
	out := make([]store.Store, n)
	for i := range out {
		s, err := sqlite.Open(t.Context(), path, sqlite.Options{MaxAttempts: 50})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		out[i] = s
	}
	return out
}

// PostgresReplicas opens n stores on one new PostgreSQL database (skipped like
// OpenPostgres when PostgreSQL is missing).
func PostgresReplicas(t *testing.T, n int) []store.Store {
	t.Helper()
	url := pgtest.URL(t)
	out := make([]store.Store, n)
	for i := range out {
		out[i] = pgtest.OpenURL(t, url, postgres.Options{MaxConns: 8})
	}
	return out
}

// ForEachBackendReplicas runs fn as one subtest per backend with n stores on one fresh
// database. fn may call t.Parallel.
func ForEachBackendReplicas(t *testing.T, n int, fn func(t *testing.T, stores []store.Store)) {
	t.Helper()
	for _, b := range []struct {
		name string
		open ReplicaOpener
	}{{"postgres", PostgresReplicas}, {"sqlite", SQLiteReplicas}} {
		t.Run(b.name, func(t *testing.T) { fn(t, b.open(t, n)) })
	}
}

// Replicas opens n stores on one new database at once, as replicas starting together
// do: every open must succeed (they serialize their migrations), and their read-modify-
// write transactions, racing across stores, must all apply.
func Replicas(t *testing.T, n int, open func(ctx context.Context) (store.Store, error)) {
	t.Helper()
	stores := make([]store.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = open(t.Context()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		t.Cleanup(func() { _ = stores[i].Close() })
	}
	job := fullJob("job_replicas", base)
	job.Attempt = 0
	write(t, stores[0], func(ctx context.Context, tx store.Tx) error { return tx.InsertJob(ctx, job) })
	const each = 5
	for _, s := range stores {
		wg.Go(func() {
			for range each {
				err := s.ReadWrite(t.Context(), func(ctx context.Context, tx store.Tx) error {
					j, err := tx.GetJob(ctx, job.ID, true)
					if err != nil {
						return err
					}
					j.Attempt++
					return tx.UpdateJob(ctx, j)
				})
				if err != nil {
					t.Errorf("increment: %v", err)
				}
			}
		})
	}
	wg.Wait()
	for i, s := range stores {
		if got := getJob(t, s, job.ID).Attempt; got != int64(n*each) {
			t.Errorf("replica %d sees attempt %d, want %d", i, got, n*each)
		}
	}
}
