package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/sqlstore"
)

// countingQuerier counts the statements a transaction sends.
type countingQuerier struct {
	sqlstore.Querier
	n int
}

func (c *countingQuerier) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	c.n++
	return c.Querier.Exec(ctx, q, args...)
}

func (c *countingQuerier) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	c.n++
	return c.Querier.Query(ctx, q, args...)
}

func (c *countingQuerier) QueryRow(ctx context.Context, q string, args ...any) sqlstore.Row {
	c.n++
	return c.Querier.QueryRow(ctx, q, args...)
}

// The writes that lock a job then need its chain head and the active snapshot; the
// locking read brings both, so asking for them costs no further statement.
func TestLockingReadBringsHeadAndActive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "agate.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	src := []byte("version: v1\n")
	sha, id := snapshots.Digest(src)
	var last evidence.Event
	err = s.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		if _, err := tx.PutSnapshot(ctx, snapshots.Snapshot{ID: id, SHA256: sha, Source: src, CreatedAt: time.Now()}); err != nil {
			return err
		}
		if err := tx.SetActiveSnapshot(ctx, id, time.Now(), "ops"); err != nil {
			return err
		}
		if err := tx.InsertJob(ctx, store.Job{ID: "job_1", Status: store.StatusAllowed}); err != nil {
			return err
		}
		last = evidence.Event{EventID: "01J0000000000000000000000A", JobID: "job_1", TraceID: "trc",
			Kind: evidence.KindDecision, At: 1, Actor: "agent", Principal: "svc", Decision: "allow",
			RuleID: "default", Reason: "no rule matched", PolicySnapshot: id, JobHash: "sha256:aa", Status: "allowed"}
		if err := last.Seal(0, ""); err != nil {
			return err
		}
		return tx.AppendEvent(ctx, last)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.inTx(ctx, s.w, nil, func(sqlTx *sql.Tx) error {
		q := &countingQuerier{Querier: sqlstore.StdQuerier(sqlTx)}
		tx := sqlstore.NewTx(q, dialect)
		if _, err := tx.GetJob(ctx, "job_1", true); err != nil {
			return err
		}
		before := q.n
		seq, hash, err := tx.ChainHead(ctx, "job_1")
		if err != nil || seq != 1 || hash != last.Hash {
			t.Errorf("ChainHead = %d, %q, %v; want 1, %q", seq, hash, err, last.Hash)
		}
		if active, err := tx.ActiveSnapshotID(ctx); err != nil || active != id {
			t.Errorf("ActiveSnapshotID = %q, %v; want %q", active, err, id)
		}
		if q.n != before {
			t.Errorf("%d statements after the locking read, want none", q.n-before)
		}
		if _, _, err := tx.ChainHead(ctx, "job_2"); err != nil || q.n != before+1 {
			t.Errorf("an unlocked chain's head: %v, %d statements; want one", err, q.n-before)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// recordingQuerier remembers the last query it ran.
type recordingQuerier struct {
	sqlstore.Querier
	sql  string
	args []any
}

func (r *recordingQuerier) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	r.sql, r.args = q, args
	return r.Querier.Query(ctx, q, args...)
}

// The expiry sweeper's question is answered by the partial index jobs_due, which holds
// only the jobs whose deadline means something.
func TestDueJobsUsesPartialIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "agate.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	for _, status := range []store.Status{store.StatusPendingApproval, store.StatusApproved} {
		err = s.inTx(ctx, s.w, nil, func(sqlTx *sql.Tx) error {
			q := &recordingQuerier{Querier: sqlstore.StdQuerier(sqlTx)}
			if _, err := sqlstore.NewTx(q, dialect).DueJobs(ctx, status, 1, 10); err != nil {
				return err
			}
			rows, err := sqlTx.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q.sql, q.args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			var plan []string
			for rows.Next() {
				var id, parent, unused int
				var detail string
				if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
					return err
				}
				plan = append(plan, detail)
			}
			if !strings.Contains(strings.Join(plan, "; "), "jobs_due") {
				t.Errorf("DueJobs(%s) plan %q does not use jobs_due", status, plan)
			}
			return rows.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
