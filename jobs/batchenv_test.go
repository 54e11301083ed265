package jobs_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/store"
)

// gatedStore counts write transactions, can hold the next one at the door until the
// test lets it in, and can fail the next ones with queued errors.
type gatedStore struct {
	store.Store
	writes atomic.Int64

	mu      sync.Mutex
	gate    chan struct{} // the next ReadWrite waits for it to close
	arrived chan struct{} // closed when that ReadWrite is waiting
	fails   []error
	breaks  int // the next write transactions run their body, then fail to commit
}

// breakNext makes the next write transaction run its body and then fail instead of
// committing, as a crash before the commit would leave it: rolled back.
func (g *gatedStore) breakNext() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.breaks++
}

// holdNext makes the next write transaction wait until release is called, and returns
// a channel closed once it waits. A held transaction whose context ends returns the
// context's error without running.
func (g *gatedStore) holdNext() (arrived <-chan struct{}, release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gate, g.arrived = make(chan struct{}), make(chan struct{})
	gate := g.gate
	var once sync.Once
	return g.arrived, func() { once.Do(func() { close(gate) }) }
}

func (g *gatedStore) failNext(errs ...error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fails = append(g.fails, errs...)
}

func (g *gatedStore) ReadWrite(ctx context.Context, fn func(context.Context, store.Tx) error) error {
	g.writes.Add(1)
	g.mu.Lock()
	gate, arrived := g.gate, g.arrived
	g.gate, g.arrived = nil, nil
	var fail error
	if gate == nil && len(g.fails) > 0 {
		fail, g.fails = g.fails[0], g.fails[1:]
	}
	broken := gate == nil && fail == nil && g.breaks > 0
	if broken {
		g.breaks--
	}
	g.mu.Unlock()
	if gate != nil {
		close(arrived)
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail != nil {
		return fail
	}
	if broken {
		return g.Store.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
			if err := fn(ctx, tx); err != nil {
				return err
			}
			return errCommit
		})
	}
	return g.Store.ReadWrite(ctx, fn)
}

// bigBatches holds every Decide the tests queue in one batch.
var bigBatches = commitMode{"big batches", jobs.Batch{Window: time.Millisecond, MaxRows: 64}}

// decideCall is one Decide started in the background.
type decideCall struct {
	req  jobs.DecideRequest
	res  jobs.DecideResult
	err  error
	done chan struct{}
}

// lineUp holds the next write transaction with a Decide of its own, then queues reqs in
// order behind it, each once the one before is queued, so they form the next batch in
// that order. release lets the held transaction, and then the batch, run.
func lineUp(t *testing.T, e *env, g *gatedStore, ctx context.Context, reqs ...jobs.DecideRequest) (calls []*decideCall, release func()) {
	t.Helper()
	arrived, open := g.holdNext()
	t.Cleanup(open)
	first := e.start(context.Background(), report.request(newID("holder")))
	select {
	case <-arrived:
	case <-first.done:
		t.Fatalf("the holding Decide returned: %v", first.err)
	}
	for i, r := range reqs {
		calls = append(calls, e.start(ctx, r))
		waitFor(t, func() bool { return jobs.QueuedDecides(e.svc) == i+1 })
	}
	return calls, func() {
		open()
		<-first.done
		wantNoErr(t, first.err)
	}
}

func (e *env) start(ctx context.Context, r jobs.DecideRequest) *decideCall {
	c := &decideCall{req: r, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.res, c.err = e.svc.Decide(ctx, decider, r)
	}()
	return c
}

func (c *decideCall) wait(t *testing.T) *decideCall {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("Decide %s did not return", c.req.JobID)
	}
	return c
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func setStatus(t *testing.T, st store.Store, id string, s store.Status) {
	t.Helper()
	err := st.ReadWrite(context.Background(), func(ctx context.Context, tx store.Tx) error {
		j, err := tx.GetJob(ctx, id, true)
		if err != nil {
			return err
		}
		j.Status = s
		return tx.UpdateJob(ctx, j)
	})
	wantNoErr(t, err)
}
