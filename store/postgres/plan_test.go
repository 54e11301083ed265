package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/postgres"
	"github.com/agate-pdp/agate/store/postgres/pgtest"
)

// The expiry sweeper's question is answered by the partial index jobs_due, which holds
// only the jobs whose deadline means something, on a table of mostly allowed jobs. The
// index's scan count is read after the store's connections have closed, which is when
// PostgreSQL publishes them.
func TestDueJobsUsesPartialIndex(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := pgtest.URL(t)
	s, err := postgres.Open(ctx, url, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	jobs := make([]store.Job, 2000)
	for i := range jobs {
		jobs[i] = store.Job{ID: fmt.Sprintf("job_plan_%04d", i), Status: store.StatusAllowed, DecidedAt: 1}
		if i%100 == 0 {
			jobs[i].Status, jobs[i].ExpiresAt = store.StatusPendingApproval, int64(i+1)
		}
	}
	err = s.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		_, err := tx.InsertJobs(ctx, jobs)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "ANALYZE jobs"); err != nil {
		t.Fatal(err)
	}
	var due []string
	for range 8 { // past the five custom plans, to the generic plan of a cached statement
		err = s.Read(ctx, func(ctx context.Context, tx store.Tx) error {
			due, err = tx.DueJobs(ctx, store.StatusPendingApproval, 1000, 100)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(due) != 10 {
		t.Errorf("DueJobs found %d jobs, want 10", len(due))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The closed connections' backends publish their counts as they exit.
	var scans int64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := admin.QueryRow(ctx, `SELECT COALESCE(SUM(idx_scan), 0) FROM pg_stat_user_indexes
			WHERE indexrelname = 'jobs_due'`).Scan(&scans); err != nil {
			t.Fatal(err)
		}
		if scans >= 8 || time.Now().After(deadline) {
			break
		}
	}
	if scans < 8 {
		t.Errorf("jobs_due was scanned %d times by 8 DueJobs, want 8", scans)
	}
}
