package main

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
)

// kind is a statement's first word, lower case.
func kind(query string) string {
	q := strings.TrimSpace(query)
	for strings.HasPrefix(q, "/*") {
		_, q, _ = strings.Cut(q, "*/")
		q = strings.TrimSpace(q)
	}
	w, _, _ := strings.Cut(q, " ")
	return strings.ToLower(strings.TrimRight(w, ";"))
}

// totals sums one phase's statements.
type totals struct {
	commits, rollbacks, begins int64
	stmts, reads, writes       int64
	rowsRead, rowsWritten      int64
	blks                       int64
	kv, kvSecondary, kvBytes   int64
	internal                   int64 // statements run inside others (foreign-key checks)
}

func (r result) totals() totals {
	var t totals
	for _, s := range r.stmts {
		t.blks += s.blksHit + s.blksRead
		if !s.toplevel {
			t.internal += s.calls
			continue
		}
		t.stmts += s.calls
		switch kind(s.query) {
		case "begin", "start":
			t.begins += s.calls
		case "commit":
			t.commits += s.calls
		case "rollback":
			t.rollbacks += s.calls
		case "select":
			t.reads += s.calls
			t.rowsRead += s.rows
		case "insert", "update", "delete":
			t.writes += s.calls
			t.rowsWritten += s.rows
		}
	}
	for _, c := range r.kv {
		n := c.added + c.removed + c.changed
		t.kv += n
		if !c.ix.primary {
			t.kvSecondary += n
		}
		t.kvBytes += c.bytesAdded + c.bytesChanged
	}
	return t
}

func per(n int64, ops int) string {
	v := float64(n) / float64(ops)
	switch {
	case v == 0:
		return "0"
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func report(w io.Writer, cfg config, rs []result) {
	fmt.Fprintf(w, "#### Work per call on PostgreSQL (%d calls per phase)\n\n", cfg.N)
	fmt.Fprintln(w, "| call | calls per commit | transactions begun (rolled back) | statements | reads | writes | foreign-key checks | rows read | rows written | KV entries written | of them secondary-index | KV bytes written | WAL bytes | calls/s |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range rs {
		t := r.totals()
		batch, rate := "–", "–"
		if !r.sealOnly {
			if t.commits > 0 {
				batch = fmt.Sprintf("%.1f", float64(r.ops)/float64(t.commits))
			}
			rate = fmt.Sprintf("%.0f", float64(r.ops)/r.elapsed.Seconds())
		}
		fmt.Fprintf(w, "| %s | %s | %s (%s) | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.name, batch,
			per(t.begins, r.ops), per(t.rollbacks, r.ops), per(t.stmts, r.ops), per(t.reads, r.ops), per(t.writes, r.ops), per(t.internal, r.ops),
			per(t.rowsRead, r.ops), per(t.rowsWritten, r.ops), per(t.kv, r.ops), per(t.kvSecondary, r.ops),
			per(t.kvBytes, r.ops), per(r.wal, r.ops), rate)
	}

	fmt.Fprintf(w, "\n#### Index entries written per call (added + removed; primary keys: rows written), and the mean size of an entry written (a primary key's: the whole row)\n\n")
	var names []string
	cols := map[string]string{}
	cell := map[string]map[int]int64{}
	bytes, written := map[string]int64{}, map[string]int64{} // of the entries added or rewritten
	for i, r := range rs {
		for _, c := range r.kv {
			name := c.ix.table + "." + c.ix.name
			if cell[name] == nil {
				names = append(names, name)
				cell[name] = map[int]int64{}
				cols[name] = strings.Join(c.ix.cols, ", ")
			}
			cell[name][i] += c.added + c.removed + c.changed
			bytes[name] += c.bytesAdded + c.bytesChanged
			written[name] += c.added + c.changed
		}
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(a, b) })
	fmt.Fprint(w, "| index (key columns) | bytes per entry |")
	for i := range rs {
		fmt.Fprintf(w, " %d |", i+1)
	}
	fmt.Fprint(w, "\n| --- | ---: |")
	for range rs {
		fmt.Fprint(w, " ---: |")
	}
	fmt.Fprintln(w)
	for _, n := range names {
		fmt.Fprintf(w, "| %s (%s) | %s |", n, cols[n], per(bytes[n], int(max(written[n], 1))))
		for i, r := range rs {
			fmt.Fprintf(w, " %s |", per(cell[n][i], r.ops))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	for i, r := range rs {
		fmt.Fprintf(w, "%d. %s\n", i+1, r.name)
	}
	if !cfg.Verbose {
		return
	}
	for _, r := range rs {
		fmt.Fprintf(w, "\n#### Statements of %q, per call\n\n| calls | rows | WAL bytes | blocks | statement |\n| ---: | ---: | ---: | ---: | --- |\n", r.name)
		slices.SortStableFunc(r.stmts, func(a, b stmtDelta) int { return cmp.Compare(a.id, b.id) })
		slices.SortFunc(r.stmts, func(a, b stmtDelta) int { return cmp.Compare(b.calls, a.calls) })
		for _, s := range r.stmts {
			q := strings.Join(strings.Fields(s.query), " ")
			if len(q) > 160 {
				q = q[:160] + "…"
			}
			if !s.toplevel {
				q = "(inside another) " + q
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | `%s` |\n", per(s.calls, r.ops), per(s.rows, r.ops), per(int64(s.walBytes), r.ops),
				per(s.blksHit+s.blksRead, r.ops), strings.ReplaceAll(q, "|", "\\|"))
		}
	}
}
