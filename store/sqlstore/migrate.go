package sqlstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agate-pdp/agate/store"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migration is one versioned schema change.
type Migration struct {
	Version    int64
	Name       string
	Statements []string
}

// Migrations returns the schema changes in version order, written for d.
func (d *Dialect) Migrations() ([]Migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, name := range names {
		base := strings.TrimSuffix(path.Base(name), ".sql")
		num, label, ok := strings.Cut(base, "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("store: migration %s: name must be NNNN_label.sql", name)
		}
		src, err := migrationFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		text := strings.ReplaceAll(string(src), "BYTES_TYPE", d.BytesType)
		out = append(out, Migration{Version: v, Name: label, Statements: splitStatements(text)})
	}
	slices.SortFunc(out, func(a, b Migration) int { return int(a.Version - b.Version) })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("store: two migrations numbered %d", out[i].Version)
		}
	}
	return out, nil
}

// splitStatements drops whole-line "--" comments and splits on ";". Migrations keep
// semicolons out of comments and literals, so nothing needs a real SQL lexer.
func splitStatements(text string) []string {
	var b strings.Builder
	for line := range strings.Lines(text) {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			b.WriteString(line)
		}
	}
	var out []string
	for stmt := range strings.SplitSeq(b.String(), ";") {
		if stmt = strings.TrimSpace(stmt); stmt != "" {
			out = append(out, stmt)
		}
	}
	return out
}

// bootstrap creates the tables that record and serialize migrations.
var bootstrap = []string{
	`CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY,
		name TEXT NOT NULL, applied_at BIGINT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS schema_lock (id INT PRIMARY KEY, locked_at BIGINT NOT NULL)`,
	`INSERT INTO schema_lock (id, locked_at) VALUES (1, 0) ON CONFLICT DO NOTHING`,
}

// catalogRaces bounds how often any other error restarts the migration: replicas
// creating the same table at once can collide in PostgreSQL's catalog even with IF NOT
// EXISTS (a unique violation, or "type … already exists"), and the next attempt sees the
// other's table. A lasting error (a newer schema, a refused password) fails after these.
const catalogRaces = 5

// Start-up waits between attempts grow from waitMin to waitMax: a database that is down
// for minutes is polled every few seconds, not hammered.
const (
	waitMin = 50 * time.Millisecond
	waitMax = 5 * time.Second
)

// BeginFunc runs fn in one transaction and commits it when fn returns nil. A backend's
// migration transaction must see rows committed while it waited for the lock row
// (READ COMMITTED in PostgreSQL; SQLite's BEGIN IMMEDIATE).
type BeginFunc func(ctx context.Context, fn func(q Querier) error) error

// Migrate applies the migrations the database lacks, each recorded in schema_migrations.
// Replicas starting together serialize on the schema_lock row: each waits for the
// other's migrations and then finds them applied. A database migrated by a newer
// version than this one is refused.
//
// Migrate waits for the database: while it cannot be reached or another process holds
// it (busy, serialization failure), the whole migration is retried with growing,
// jittered waits until it succeeds or ctx ends. Each attempt is idempotent. The wait is
// logged once when it starts and once when it ends.
func (d *Dialect) Migrate(ctx context.Context, log *slog.Logger, begin BeginFunc) error {
	migs, err := d.Migrations()
	if err != nil {
		return err
	}
	var waitStart time.Time
	races := 0
	for n := 0; ; n++ {
		err = d.migrateOnce(ctx, migs, begin)
		if err == nil {
			if !waitStart.IsZero() {
				log.Info("database ready", "backend", d.Name, "waited", time.Since(waitStart).Round(time.Millisecond).String())
			}
			return nil
		}
		switch c := d.Classify(err); {
		case ctx.Err() != nil:
			// Both: the caller's deadline ended the wait, and the database was unavailable.
			return fmt.Errorf("store: migrating the %s schema: gave up waiting (%w): %w", d.Name, ctx.Err(), d.unavailable(err))
		case c == ClassRetry || c == ClassUnavailable:
		case races < catalogRaces:
			races++
		default:
			return fmt.Errorf("store: migrating the %s schema: %w", d.Name, d.MapError(err))
		}
		if waitStart.IsZero() {
			waitStart = time.Now()
			log.Warn("database not ready: waiting for it", "backend", d.Name, "err", err.Error())
		}
		if serr := sleep(ctx, startupWait(n)); serr != nil {
			return fmt.Errorf("store: migrating the %s schema: gave up waiting (%w): %w", d.Name, serr, d.unavailable(err))
		}
	}
}

// unavailable is the error of a wait for the database that ended before it answered: the
// database was unavailable, whatever the last attempt's own error was (an attempt cut
// short by the deadline fails with the context's error, not the driver's).
func (d *Dialect) unavailable(err error) error {
	mapped := d.MapError(err)
	if errors.Is(mapped, store.ErrUnavailable) {
		return mapped
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, mapped)
}

// startupWait is a random duration up to min(waitMax, waitMin·2ⁿ), at least 1 ms.
func startupWait(n int) time.Duration {
	d := waitMax
	if n < 16 && waitMin<<n < waitMax {
		d = waitMin << n
	}
	return rand.N(d) + time.Millisecond
}

// migrateOnce creates the migration tables, then applies what is missing under the lock
// row, each in its own transaction.
func (d *Dialect) migrateOnce(ctx context.Context, migs []Migration, begin BeginFunc) error {
	err := begin(ctx, func(q Querier) error {
		for _, s := range bootstrap {
			if _, err := q.Exec(ctx, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return begin(ctx, func(q Querier) error { return d.apply(ctx, q, migs) })
}

// apply runs in the transaction that holds the lock row.
func (d *Dialect) apply(ctx context.Context, q Querier, migs []Migration) error {
	if _, err := q.Exec(ctx, `UPDATE schema_lock SET locked_at = $1 WHERE id = 1`, time.Now().UnixMicro()); err != nil {
		return err
	}
	applied := map[int64]bool{}
	rows, err := q.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return err
	}
	var newest int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return err
		}
		applied[v] = true
		newest = max(newest, v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if known := migs[len(migs)-1].Version; newest > known {
		return fmt.Errorf("store: database schema version %d is newer than this build's %d", newest, known)
	}
	for _, m := range migs {
		if applied[m.Version] {
			continue
		}
		for _, s := range m.Statements {
			if _, err := q.Exec(ctx, s); err != nil {
				return fmt.Errorf("migration %d_%s: %w", m.Version, m.Name, err)
			}
		}
		if _, err := q.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at)
			VALUES ($1, $2, $3)`, m.Version, m.Name, time.Now().UnixMicro()); err != nil {
			return err
		}
	}
	return nil
}
