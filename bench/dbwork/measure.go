package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// stmt is one pg_stat_statements entry's counters.
type stmt struct {
	query                       string
	toplevel                    bool // sent by the client; false: run inside another (a foreign-key check)
	calls, rows                 int64
	walRecords, walFPI          int64
	walBytes                    float64
	blksHit, blksRead, blksDirt int64
}

// index is one index (or the primary key) of a table: keyCols are its columns, and
// for a secondary index the primary key's columns follow, as a distributed database
// appends them to make the entry unique.
type index struct {
	table, name string
	primary     bool
	cols        []string
	where       string // a partial index's predicate; "" for none
}

// entry is what a snapshot keeps of one index entry: a digest of what it holds (the
// whole row for a primary key) and its size in bytes.
type entry struct {
	digest string
	size   int64
}

// snapshot is the database's state at one moment.
type snapshot struct {
	stmts   map[string]stmt
	lsn     string
	entries map[string]map[string]entry // index name → key → entry
}

// monitor reads the database as a separate role, so that its own statements are not
// counted.
type monitor struct {
	conn    *pgx.Conn
	indexes []index
}

func newMonitor(ctx context.Context, url string) (*monitor, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	return &monitor{conn: conn}, nil
}

// loadIndexes reads the schema's indexes (after Agate has migrated it).
func (m *monitor) loadIndexes(ctx context.Context) error {
	rows, err := m.conn.Query(ctx, `SELECT c.relname, i.relname, ix.indisprimary,
		array_agg(a.attname::text ORDER BY k.ord), COALESCE(pg_get_expr(ix.indpred, ix.indrelid), '')
		FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid JOIN pg_class c ON c.oid = ix.indrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		CROSS JOIN LATERAL unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
		WHERE n.nspname = 'public' AND c.relname NOT IN ('schema_migrations', 'schema_lock')
		GROUP BY 1, 2, 3, 5 ORDER BY 1, 3 DESC, 2`)
	if err != nil {
		return err
	}
	m.indexes, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (index, error) {
		var ix index
		err := r.Scan(&ix.table, &ix.name, &ix.primary, &ix.cols, &ix.where)
		return ix, err
	})
	if err != nil {
		return err
	}
	pk := map[string][]string{}
	for _, ix := range m.indexes {
		if ix.primary {
			pk[ix.table] = ix.cols
		}
	}
	for i, ix := range m.indexes {
		if ix.primary {
			continue
		}
		for _, c := range pk[ix.table] {
			if !contains(ix.cols, c) {
				m.indexes[i].cols = append(m.indexes[i].cols, c)
			}
		}
	}
	return nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func (m *monitor) snapshot(ctx context.Context) (snapshot, error) {
	s := snapshot{stmts: map[string]stmt{}, entries: map[string]map[string]entry{}}
	rows, err := m.conn.Query(ctx, `SELECT s.queryid::text || '/' || s.toplevel::text, s.toplevel, s.query, s.calls, s.rows,
		s.wal_records, s.wal_fpi, s.wal_bytes::float8, s.shared_blks_hit, s.shared_blks_read, s.shared_blks_dirtied
		FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
		WHERE d.datname = current_database() AND s.userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)`)
	if err != nil {
		return s, fmt.Errorf("pg_stat_statements: %w", err)
	}
	for rows.Next() {
		var id string
		var st stmt
		if err := rows.Scan(&id, &st.toplevel, &st.query, &st.calls, &st.rows, &st.walRecords, &st.walFPI, &st.walBytes,
			&st.blksHit, &st.blksRead, &st.blksDirt); err != nil {
			rows.Close()
			return s, err
		}
		s.stmts[id] = st
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s, err
	}
	if err := m.conn.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&s.lsn); err != nil {
		return s, err
	}
	for _, ix := range m.indexes {
		cols := strings.Join(ix.cols, ", ")
		q := fmt.Sprintf(`SELECT ROW(%[1]s)::text, '', pg_column_size(ROW(%[1]s)) FROM %[2]s`, cols, ix.table)
		if ix.primary {
			q = fmt.Sprintf(`SELECT ROW(%[1]s)::text, md5(t::text), pg_column_size(t.*) FROM %[2]s t`, cols, ix.table)
		}
		if ix.where != "" {
			q += " WHERE " + ix.where
		}
		rows, err := m.conn.Query(ctx, q)
		if err != nil {
			return s, fmt.Errorf("%s: %w", ix.name, err)
		}
		es := map[string]entry{}
		for rows.Next() {
			var k string
			var e entry
			if err := rows.Scan(&k, &e.digest, &e.size); err != nil {
				rows.Close()
				return s, err
			}
			es[k] = e
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return s, err
		}
		s.entries[ix.name] = es
	}
	return s, nil
}

// walBytes is the WAL written between two snapshots.
func (m *monitor) walBytes(ctx context.Context, a, b snapshot) (int64, error) {
	var n int64
	err := m.conn.QueryRow(ctx, `SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::bigint`, b.lsn, a.lsn).Scan(&n)
	return n, err
}

// kvChange is what one index gained and lost between two snapshots.
type kvChange struct {
	ix                       index
	added, removed, changed  int64 // changed: primary rows rewritten in place
	bytesAdded, bytesChanged int64
}

func (m *monitor) diff(a, b snapshot) []kvChange {
	var out []kvChange
	for _, ix := range m.indexes {
		before, after := a.entries[ix.name], b.entries[ix.name]
		c := kvChange{ix: ix}
		for k, e := range after {
			old, ok := before[k]
			switch {
			case !ok:
				c.added++
				c.bytesAdded += e.size
			case old.digest != e.digest:
				c.changed++
				c.bytesChanged += e.size
			}
		}
		for k := range before {
			if _, ok := after[k]; !ok {
				c.removed++
			}
		}
		if c.added+c.removed+c.changed > 0 {
			out = append(out, c)
		}
	}
	return out
}

// stmtDelta is one statement's counters over a phase.
type stmtDelta struct {
	id string
	stmt
}

func stmtDiff(a, b snapshot) []stmtDelta {
	var out []stmtDelta
	for id, s := range b.stmts {
		o := a.stmts[id]
		d := stmt{query: s.query, toplevel: s.toplevel, calls: s.calls - o.calls, rows: s.rows - o.rows, walRecords: s.walRecords - o.walRecords,
			walFPI: s.walFPI - o.walFPI, walBytes: s.walBytes - o.walBytes, blksHit: s.blksHit - o.blksHit,
			blksRead: s.blksRead - o.blksRead, blksDirt: s.blksDirt - o.blksDirt}
		if d.calls > 0 {
			out = append(out, stmtDelta{id, d})
		}
	}
	return out
}
