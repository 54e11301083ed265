package sqlstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// bulkRows is the most rows one multi-row statement carries: 27 columns × 500 rows stays
// well under SQLite's 32,766 and PostgreSQL's 65,535 bind parameters.
const bulkRows = 500

// oneRow is the VALUES list of a single-row insert into jobs or evidence.
var oneRow = valuesList(1, 27, false)

// valuesList returns "($1, …, $cols), ($cols+1, …)" for rows rows, or the same with
// every placeholder "?" when anonymous.
func valuesList(rows, cols int, anonymous bool) string {
	var b strings.Builder
	b.Grow(rows * cols * 5)
	n := 0
	for r := range rows {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for c := range cols {
			if c > 0 {
				b.WriteString(", ")
			}
			n++
			if anonymous {
				b.WriteByte('?')
				continue
			}
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		}
		b.WriteByte(')')
	}
	return b.String()
}

// chunks calls fn on consecutive runs of at most bulkRows of n items.
func chunks(n int, fn func(lo, hi int) error) error {
	for lo := 0; lo < n; lo += bulkRows {
		if err := fn(lo, min(lo+bulkRows, n)); err != nil {
			return err
		}
	}
	return nil
}

// InsertJobs implements store.JobTx: one INSERT … ON CONFLICT DO NOTHING RETURNING per
// 500 jobs, so a batch of new jobs costs one round trip instead of one per job.
func (t *Tx) InsertJobs(ctx context.Context, js []store.Job) ([]bool, error) {
	at := make(map[string]int, len(js))
	for i := range js {
		if _, dup := at[js[i].ID]; dup {
			return nil, fmt.Errorf("store: InsertJobs: job %s given twice", js[i].ID)
		}
		at[js[i].ID] = i
	}
	inserted := make([]bool, len(js))
	err := chunks(len(js), func(lo, hi int) error {
		args := make([]any, 0, (hi-lo)*27)
		for i := lo; i < hi; i++ {
			args = append(args, jobArgs(&js[i])...)
		}
		rows, err := t.q.Query(ctx, `INSERT INTO jobs (`+jobCols+`) VALUES `+valuesList(hi-lo, 27, t.d.Anonymous)+
			` ON CONFLICT DO NOTHING RETURNING job_id`, args...)
		if err != nil {
			return t.err(err)
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return t.err(err)
			}
			if i, ok := at[id]; ok {
				inserted[i] = true
			}
		}
		return t.err(rows.Err())
	})
	if err != nil {
		return nil, err
	}
	return inserted, nil
}

// AppendEvents implements store.EvidenceTx: one multi-row INSERT per 500 events.
func (t *Tx) AppendEvents(ctx context.Context, es []evidence.Event) error {
	return chunks(len(es), func(lo, hi int) error {
		args := make([]any, 0, (hi-lo)*27)
		for i := lo; i < hi; i++ {
			args = append(args, eventArgs(&es[i])...)
		}
		n, err := t.q.Exec(ctx, `INSERT INTO evidence (`+eventInsertCols+`) VALUES `+
			valuesList(hi-lo, 27, t.d.Anonymous)+` ON CONFLICT DO NOTHING`, args...)
		if err != nil {
			return fmt.Errorf("%d events from %s: %w", hi-lo, es[lo].JobID, t.err(err))
		}
		if n != int64(hi-lo) {
			return fmt.Errorf("%d of %d events from %s already stored: %w", int64(hi-lo)-n, hi-lo, es[lo].JobID, store.ErrConflict)
		}
		for i := lo; i < hi; i++ {
			t.advance(&es[i])
		}
		return nil
	})
}
