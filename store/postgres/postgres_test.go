package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/postgres"
	"github.com/agate-pdp/agate/store/postgres/pgtest"
	"github.com/agate-pdp/agate/store/storetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, storetest.OpenPostgres)
}

// Replicas starting together on an empty database serialize their migrations on the
// lock row, and then their writes on row locks.
func TestReplicas(t *testing.T) {
	t.Parallel()
	url := pgtest.EmptyURL(t)
	storetest.Replicas(t, 4, func(ctx context.Context) (store.Store, error) {
		return postgres.Open(ctx, url, postgres.Options{})
	})
}

func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	// Open waits for an unreachable database as long as its context lasts, then reports
	// both why it stopped and what it was waiting for.
	for _, scheme := range []string{"postgres", "postgresql"} {
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		_, err := postgres.Open(ctx, fmt.Sprintf("%s://agate@%s/agate?connect_timeout=5", scheme, addr), postgres.Options{})
		cancel()
		if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Open(%s://…) with no server: %v, want ErrUnavailable and DeadlineExceeded", scheme, err)
		}
	}
}

func TestOpenBadURL(t *testing.T) {
	t.Parallel()
	if _, err := postgres.Open(t.Context(), "postgres://%zz", postgres.Options{}); err == nil {
		t.Error("Open with a malformed URL succeeded")
	}
}
