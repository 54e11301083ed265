package jobs_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/postgres"
	"github.com/agate-pdp/agate/store/postgres/pgtest"
	"github.com/agate-pdp/agate/store/sqlite"
)

// BenchmarkDecide measures durable Decides of new jobs: clients goroutines call Decide
// back to back, as that many gRPC clients would, against each backend with and without
// group commit. Besides ns/op (wall time over all clients) it reports decides/s, the
// callers' p50 and p99 latency, and how many Decides shared a write transaction.
//
// The stores are opened as `agate serve` opens them (SQLite in WAL mode with
// synchronous=FULL; PostgreSQL with the default pool). The throwaway PostgreSQL of
// package pgtest runs with fsync off; set AGATE_TEST_POSTGRES_URL to a server with
// production settings for figures that include the flush.
func BenchmarkDecide(b *testing.B) {
	backends := []struct {
		name string
		open func(b *testing.B) store.Store
	}{
		{"sqlite", func(b *testing.B) store.Store {
			st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "agate.db"), sqlite.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = st.Close() })
			return st
		}},
		{"postgres", func(b *testing.B) store.Store {
			return pgtest.OpenURL(b, pgtest.URL(b), postgres.Options{})
		}},
	}
	modes := []commitMode{
		{"unbatched", jobs.Batch{}},
		{"batched", jobs.Batch{Window: time.Millisecond, MaxRows: 64}},
		{"batched-inflight4", jobs.Batch{Window: time.Millisecond, MaxRows: 64, InFlight: 4}},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			for _, m := range modes {
				b.Run(m.name, func(b *testing.B) {
					for _, clients := range []int{1, 16, 64} {
						b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
							benchDecide(b, be.open(b), m.batch, clients)
						})
					}
				})
			}
		})
	}
}

// countingStore counts write transactions.
type countingStore struct {
	store.Store
	writes atomic.Int64
}

func (c *countingStore) ReadWrite(ctx context.Context, fn func(context.Context, store.Tx) error) error {
	c.writes.Add(1)
	return c.Store.ReadWrite(ctx, fn)
}

func benchDecide(b *testing.B, st store.Store, batch jobs.Batch, clients int) {
	cs := &countingStore{Store: st}
	cache, err := snapshots.NewCache(8)
	if err != nil {
		b.Fatal(err)
	}
	svc, err := jobs.New(jobs.Config{Store: cs, Tracker: snapshots.NewTracker(cs, cache, nil), Cache: cache, Batch: batch})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(svc.Close)
	ctx := context.Background()
	if _, err := svc.PutPolicy(ctx, admin, []byte(testPolicy), true); err != nil {
		b.Fatal(err)
	}
	specs := []jobSpec{payment, report, export, transfer}
	prefix := fmt.Sprintf("bench-%d-", time.Now().UnixNano())
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	b.ReportAllocs()
	writes := cs.writes.Load()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				req := specs[i%int64(len(specs))].request(fmt.Sprintf("%s%d", prefix, i))
				t := time.Now()
				// Calls carry a deadline, as every call through the server does.
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				_, err := svc.Decide(cctx, decider, req)
				cancel()
				if err != nil {
					b.Error(err)
					return
				}
				lat[c] = append(lat[c], time.Since(t))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(len(all))/elapsed.Seconds(), "decides/s")
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
		b.ReportMetric(float64(len(all))/float64(cs.writes.Load()-writes), "decides/tx")
	}
}
