package sqlstore

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/agate-pdp/agate/canonical"
	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// Tx implements store.Tx over a backend's transaction.
type Tx struct {
	q      Querier
	d      *Dialect
	failed error

	// What this transaction already knows and need not ask the database again: the
	// chain heads of the jobs it locked or appended to, and the active snapshot pointer
	// (nil: not read yet; "": none). Both were read or written inside this transaction,
	// which every backend runs SERIALIZABLE on one snapshot, and a locked job's chain
	// grows only through this transaction; a retry gets a fresh Tx.
	heads  map[string]chainHead
	active *string
	locked map[string]bool // jobs whose rows this transaction locked (GetJob, GetJobs forUpdate)
}

type chainHead struct {
	seq  int64
	hash string
}

// advance moves a known chain head to e, just stored after it. A chain whose head
// this transaction never read stays unknown: e need not be its last event.
func (t *Tx) advance(e *evidence.Event) {
	if h, ok := t.heads[e.JobID]; ok && e.Seq > h.seq {
		t.heads[e.JobID] = chainHead{e.Seq, e.Hash}
	}
}

func (t *Tx) setHead(jobID string, h chainHead) {
	if t.heads == nil {
		t.heads = make(map[string]chainHead)
	}
	t.heads[jobID] = h
}

var _ store.Tx = (*Tx)(nil)

// NewTx returns the store.Tx that runs its statements on q.
func NewTx(q Querier, d *Dialect) *Tx { return &Tx{q: q, d: d} }

// Failed returns the first database error a statement of this transaction met, mapped,
// or nil. PostgreSQL aborts a transaction at its first error, so when the callback
// swallowed one the commit fails; the backend reports this error instead, and the retry
// loop sees a serialization failure for what it was.
func (t *Tx) Failed() error { return t.failed }

// err maps a driver error and remembers the first one.
func (t *Tx) err(err error) error {
	if err == nil {
		return nil
	}
	mapped := t.d.MapError(err)
	if t.failed == nil && !errors.Is(err, sql.ErrNoRows) {
		t.failed = mapped
	}
	return mapped
}

// query collects a WHERE clause and its arguments. Each placeholder stands for one
// argument, in order, so that with the dialect's Anonymous placeholders ("?") the
// statement text and its arguments still line up.
type query struct {
	conds []string
	args  []any
	anon  bool
}

func (t *Tx) query() *query { return &query{anon: t.d.Anonymous} }

// arg adds an argument and returns its placeholder.
func (q *query) arg(v any) string {
	q.args = append(q.args, v)
	if q.anon {
		return "?"
	}
	return "$" + strconv.Itoa(len(q.args))
}

// where adds a condition; each %s in cond is replaced by a placeholder of the next value.
func (q *query) where(cond string, vals ...any) {
	ph := make([]any, len(vals))
	for i, v := range vals {
		ph[i] = q.arg(v)
	}
	q.conds = append(q.conds, fmt.Sprintf(cond, ph...))
}

// eq adds "col = value" when value is not empty.
func (q *query) eq(col, value string) {
	if value != "" {
		q.where(col+" = %s", value)
	}
}

// in adds "col IN (values…)" when values is not empty.
func (q *query) in(col string, values []string) {
	if len(values) == 0 {
		return
	}
	ph := make([]string, len(values))
	for i, v := range values {
		ph[i] = q.arg(v)
	}
	q.conds = append(q.conds, col+" IN ("+strings.Join(ph, ", ")+")")
}

// after adds the keyset cursor "(a, b) > (av, bv)", written without row values so
// every planner uses the (a, b) index the same way.
func (q *query) after(a, b string, av int64, bv string) {
	if av == 0 && bv == "" {
		return
	}
	q.where(fmt.Sprintf("(%s > %%s OR (%s = %%s AND %s > %%s))", a, a, b), av, av, bv)
}

// sql returns the WHERE clause (with a leading space, or "").
func (q *query) sql() string {
	if len(q.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(q.conds, " AND ")
}

// limit returns the LIMIT clause for n, or "" when n is not positive (no limit).
func (q *query) limit(n int) string {
	if n <= 0 {
		return ""
	}
	return " LIMIT " + q.arg(n)
}

// encodeList stores a list as a JSON array.
func encodeList(l []string) string {
	if len(l) == 0 {
		return "[]"
	}
	// canonical.Append writes JSON without reflection: this runs on every Decide.
	b, err := canonical.Append(nil, l)
	if err != nil { // only invalid UTF-8 gets here; encoding/json would replace it silently
		b, _ = json.Marshal(l)
	}
	return string(b)
}

// decodeList reads a JSON array; an empty one reads as nil.
func decodeList(s string) ([]string, error) {
	if s == "" || s == "[]" {
		return nil, nil
	}
	var l []string
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, fmt.Errorf("store: corrupt list %q: %w", s, err)
	}
	return l, nil
}

// bytesIn makes nil bytes an empty value: drivers store nil as NULL.
func bytesIn(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// bytesOut reads an empty value back as nil, the same from every driver.
func bytesOut(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// orNull stores the zero value of a column that an event may lack as NULL.
func orNull[T comparable](v T) any {
	var zero T
	if v == zero {
		return nil
	}
	return v
}
