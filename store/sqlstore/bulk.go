package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// The column counts of job and evidence rows, and the VALUES list of a single-row insert
// of each.
var (
	jobColN     = strings.Count(jobCols, ",") + 1
	eventColN   = strings.Count(eventInsertCols, ",") + 1
	oneJobRow   = valuesList(1, jobColN, false)
	oneEventRow = valuesList(1, eventColN, false)
)

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

// InsertJobs implements store.JobTx: one INSERT … ON CONFLICT DO NOTHING RETURNING per
// maxBatch jobs, so a batch of new jobs costs one round trip instead of one per job.
func (t *Tx) InsertJobs(ctx context.Context, js []store.Job) ([]bool, error) {
	at := make(map[string]int, len(js))
	for i := range js {
		if _, dup := at[js[i].ID]; dup {
			return nil, fmt.Errorf("store: InsertJobs: job %s given twice", js[i].ID)
		}
		at[js[i].ID] = i
	}
	inserted := make([]bool, len(js))
	for chunk := range slices.Chunk(js, maxBatch) {
		args := make([]any, 0, len(chunk)*jobColN)
		for i := range chunk {
			args = append(args, jobArgs(&chunk[i])...)
		}
		if err := t.insertReturning(ctx, `INSERT INTO jobs (`+jobCols+`) VALUES `+
			valuesList(len(chunk), jobColN, t.d.Anonymous)+` ON CONFLICT DO NOTHING RETURNING job_id`, args, func(id string) {
			if i, ok := at[id]; ok {
				inserted[i] = true
			}
		}); err != nil {
			return nil, err
		}
	}
	return inserted, nil
}

// insertReturning runs an INSERT … RETURNING of one text column and passes each value
// returned to got.
func (t *Tx) insertReturning(ctx context.Context, sql string, args []any, got func(string)) error {
	rows, err := t.q.Query(ctx, sql, args...)
	if err != nil {
		return t.err(err)
	}
	defer rows.Close()
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return t.err(err)
		}
		got(v)
	}
	return t.err(rows.Err())
}

// AppendEvents implements store.EvidenceTx: one multi-row INSERT per maxBatch events.
func (t *Tx) AppendEvents(ctx context.Context, es []evidence.Event) error {
	for chunk := range slices.Chunk(es, maxBatch) {
		args := make([]any, 0, len(chunk)*eventColN)
		for i := range chunk {
			args = append(args, eventArgs(&chunk[i])...)
		}
		n, err := t.q.Exec(ctx, `INSERT INTO evidence (`+eventInsertCols+`) VALUES `+
			valuesList(len(chunk), eventColN, t.d.Anonymous)+` ON CONFLICT DO NOTHING`, args...)
		if err != nil {
			return fmt.Errorf("%d events from %s: %w", len(chunk), chunk[0].JobID, t.err(err))
		}
		if n != int64(len(chunk)) {
			return fmt.Errorf("%d of %d events from %s already stored: %w", int64(len(chunk))-n, len(chunk), chunk[0].JobID, store.ErrConflict)
		}
		for i := range chunk {
			t.advance(&chunk[i])
		}
	}
	return nil
}
