package sqlite_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/sqlite"
	"github.com/agate-pdp/agate/store/storetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, storetest.OpenSQLite)
}

// Processes sharing one file: they serialize their migrations and their writes.
// Replicas creating one new file at once contend for it from the first statement on;
// a 1 ms busy timeout makes nearly every attempt of theirs fail, and each must still
// start.
func TestReplicas(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "nested", "dir", "agate.db") // parents are created
	storetest.Replicas(t, 5, func(ctx context.Context) (store.Store, error) {
		return sqlite.Open(ctx, path, sqlite.Options{BusyTimeout: time.Millisecond, MaxAttempts: 50})
	})
}

// A replica that starts while another process holds the file's write lock, for far
// longer than its busy timeout, waits and starts once the lock is released; it does
// not fail, and it does not start before.
func TestOpenWaitsForHeldFile(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "agate.db")
	holder, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	holding, release, held := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		held <- holder.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
			close(holding)
			<-release
			return nil
		})
	}()
	<-holding
	type opened struct {
		s   *sqlite.Store
		err error
	}
	const replicas = 3
	done := make(chan opened, replicas)
	for range replicas {
		go func() {
			s, err := sqlite.Open(ctx, path, sqlite.Options{BusyTimeout: 5 * time.Millisecond, MaxAttempts: 2})
			done <- opened{s, err}
		}()
	}
	// Many times the old budget of a few busy timeouts: nobody may have started.
	select {
	case o := <-done:
		t.Fatalf("a replica finished opening while the file was held: %v", o.err)
	case <-time.After(500 * time.Millisecond):
	}
	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	for range replicas {
		o := <-done
		if o.err != nil {
			t.Fatalf("replica: %v", o.err)
		}
		_ = o.s.Close()
	}
}

// Open waits for a held file only as long as its context lasts.
func TestOpenGivesUpWithContext(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "agate.db")
	holder, err := sqlite.Open(t.Context(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	holding, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	go func() {
		_ = holder.ReadWrite(t.Context(), func(context.Context, store.Tx) error {
			close(holding)
			<-release
			return nil
		})
	}()
	<-holding
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if s, err := sqlite.Open(ctx, path, sqlite.Options{BusyTimeout: 5 * time.Millisecond}); !errors.Is(err, context.DeadlineExceeded) {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("Open while the file is held past the context: %v, want DeadlineExceeded", err)
	}
}

// A writer that holds the file past the busy timeout and the retry budget makes the
// other process's transaction fail with ErrBusy, having applied nothing.
func TestBusy(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "agate.db")
	holder, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	other, err := sqlite.Open(ctx, path, sqlite.Options{BusyTimeout: 10 * time.Millisecond, MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	holding, release, held := make(chan struct{}), make(chan struct{}), make(chan error)
	go func() {
		held <- holder.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
			close(holding)
			<-release
			return tx.InsertJob(ctx, store.Job{ID: "job_holder", Status: store.StatusAllowed})
		})
	}()
	<-holding
	ran := false
	err = other.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		ran = true
		return tx.InsertJob(ctx, store.Job{ID: "job_other", Status: store.StatusAllowed})
	})
	close(release)
	if !errors.Is(err, store.ErrBusy) || ran {
		t.Errorf("write while another process holds the file: %v (callback ran: %v), want ErrBusy", err, ran)
	}
	if err := <-held; err != nil {
		t.Fatalf("holder: %v", err)
	}
	err = other.Read(ctx, func(ctx context.Context, tx store.Tx) error {
		if _, err := tx.GetJob(ctx, "job_other", false); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the busy transaction's job: %v, want ErrNotFound", err)
		}
		_, err := tx.GetJob(ctx, "job_holder", false)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenRefusesBadPath(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"", filepath.Join(t.TempDir(), "a?b.db")} {
		if s, err := sqlite.Open(t.Context(), p, sqlite.Options{}); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}
