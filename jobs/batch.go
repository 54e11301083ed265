package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agate-pdp/agate/store"
)

// Batch configures group commit on the Decide path. A transaction costs a commit, and
// a commit costs a disk flush, so with batching on, Decides that arrive together share
// one transaction: each still reads and writes as if it had the transaction to itself,
// and each caller is answered only once that transaction has committed.
type Batch struct {
	// Window is how long a batch waits for more Decides while the database is busy with
	// another batch. A Decide that finds nothing queued and no batch running does not
	// wait.
	Window time.Duration
	// MaxRows is the most Decides one transaction holds. 0 or 1 turns batching off: each
	// Decide has a transaction of its own.
	MaxRows int
	// InFlight is how many batch transactions may run at once (default 1). More than one
	// helps a database that commits transactions in parallel (PostgreSQL); SQLite has a
	// single writer, so there a second batch would only wait for the first.
	InFlight int
}

func (b Batch) on() bool { return b.MaxRows > 1 }

// decideCall is one Decide waiting for its batch.
type decideCall struct {
	ctx   context.Context
	job   *decideJob
	out   DecideResult
	err   error
	alone bool          // the batch failed: write this job in a transaction of its own
	done  chan struct{} // closed when out, err and alone are set
}

// batcher groups concurrent Decides into shared transactions. One loop forms batches in
// arrival order; each batch runs in its own goroutine, at most cap(slots) at a time.
type batcher struct {
	s      *Service
	window time.Duration
	max    int
	slots  chan struct{} // one token per running batch
	wake   chan struct{} // capacity 1: a call was queued, or Close was called

	mu     sync.Mutex
	queue  []*decideCall
	closed bool

	running sync.WaitGroup // batches started and not finished
	stopped chan struct{}  // closed when the loop has returned and every batch has finished
	closing sync.Once
}

func newBatcher(s *Service, cfg Batch) *batcher {
	inFlight := cfg.InFlight
	if inFlight < 1 {
		inFlight = 1
	}
	b := &batcher{s: s, window: cfg.Window, max: cfg.MaxRows, slots: make(chan struct{}, inFlight),
		wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	go b.loop()
	return b
}

// decide queues d and waits for its batch. A caller whose context ends first gets its
// context's error; its job may still commit, as with any call whose reply is lost, and
// a retry then answers AlreadyDecided.
func (b *batcher) decide(ctx context.Context, d *decideJob) (DecideResult, error) {
	c := &decideCall{ctx: ctx, job: d, done: make(chan struct{})}
	if !b.enqueue(c) {
		return b.s.decideAlone(ctx, d) // closed: the service still answers, one transaction each
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		return DecideResult{}, ctx.Err()
	}
	if c.alone {
		return b.s.decideAlone(ctx, d)
	}
	return c.out, c.err
}

func (b *batcher) enqueue(c *decideCall) bool {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false
	}
	b.queue = append(b.queue, c)
	b.mu.Unlock()
	b.signal()
	return true
}

func (b *batcher) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// close stops taking calls, runs those already queued, and waits for every batch.
func (b *batcher) close() {
	b.closing.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		b.signal()
	})
	<-b.stopped
}

func (b *batcher) loop() {
	defer close(b.stopped)
	defer b.running.Wait()
	for {
		batch := b.next()
		if batch == nil {
			return
		}
		b.running.Add(1)
		go func() {
			defer b.running.Done()
			defer func() { <-b.slots }()
			b.run(batch)
		}()
	}
}

// next waits for the next batch and a slot to run it in; nil when closed and drained.
func (b *batcher) next() []*decideCall {
	queued, closed := b.state()
	for queued == 0 {
		if closed {
			return nil
		}
		<-b.wake
		queued, closed = b.state()
	}
	// Something is queued. When another batch is running, the database is busy anyway:
	// wait a little for company. When nothing runs, go now, so a lone Decide pays no
	// window.
	if len(b.slots) > 0 && queued < b.max && !closed && b.window > 0 {
		t := time.NewTimer(b.window)
	gather:
		for queued < b.max && !closed {
			select {
			case <-b.wake:
				queued, closed = b.state()
			case <-t.C:
				break gather
			}
		}
		t.Stop()
	}
	b.slots <- struct{}{} // calls keep queueing while every slot is taken
	b.mu.Lock()
	defer b.mu.Unlock()
	n := min(len(b.queue), b.max)
	batch := make([]*decideCall, n)
	copy(batch, b.queue)
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	return batch
}

func (b *batcher) state() (queued int, closed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue), b.closed
}

// run writes a batch in one transaction and answers its callers. If the transaction
// fails for any reason but every caller having gone, each job is written again in a
// transaction of its own by its caller, so one bad job never fails its batch-mates.
func (b *batcher) run(batch []*decideCall) {
	live := batch[:0:0]
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			c.err = err // its caller has gone; writing it now would answer nobody
			close(c.done)
			continue
		}
		live = append(live, c)
	}
	if len(live) == 0 {
		return
	}
	ctx, stop := callersContext(live)
	defer stop()
	ds := make([]*decideJob, len(live))
	for i, c := range live {
		ds[i] = c.job
	}
	var outs []DecideResult
	var answers []error
	var err error
	// A job id that a concurrent transaction inserted (two batches racing on one new id)
	// is ErrConflict: the next attempt's snapshot sees that row, so the batch runs again,
	// as a lone Decide does, rather than sending every batch-mate off to run alone.
	for range conflictRetries {
		err = b.s.store.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) (err error) {
			defer func() {
				// A panic here would take the process down with it; failing the batch
				// instead lets each job run alone on its caller's goroutine, where the
				// server's recovery handles it.
				if p := recover(); p != nil {
					err = fmt.Errorf("jobs: panic in a batch: %v", p)
				}
			}()
			outs, answers, err = applyBatch(ctx, tx, ds, b.s.nowMicro()) // now per attempt, as for a transaction of one
			return err
		})
		if !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	if err != nil && ctx.Err() == nil {
		b.s.log.Debug("batch transaction failed; writing its jobs one by one", "jobs", len(live), "err", err)
	}
	for i, c := range live {
		switch {
		case err == nil:
			c.out, c.err = outs[i], answers[i]
		case ctx.Err() != nil:
			c.err = c.ctx.Err() // every caller has gone
		default:
			c.alone = true
		}
		close(c.done)
	}
}

// callersContext returns a context that ends when every call's context has ended:
// while anyone still waits, the batch carries on, and a caller that leaves early
// does not take its batch-mates' writes with it. When every caller has a deadline, the
// batch has the latest of them, so the store sees a deadline as a lone Decide would.
func callersContext(calls []*decideCall) (context.Context, func()) {
	var latest time.Time
	for _, c := range calls {
		d, ok := c.ctx.Deadline()
		if !ok {
			latest = time.Time{}
			break
		}
		if d.After(latest) {
			latest = d
		}
	}
	parent, cancelDeadline := context.Background(), context.CancelFunc(func() {})
	if !latest.IsZero() {
		parent, cancelDeadline = context.WithDeadline(parent, latest)
	}
	ctx, cancelCtx := context.WithCancel(parent)
	cancel := func() { cancelCtx(); cancelDeadline() }
	var left atomic.Int64
	left.Store(int64(len(calls)))
	stops := make([]func() bool, len(calls))
	for i, c := range calls {
		stops[i] = context.AfterFunc(c.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		})
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}
