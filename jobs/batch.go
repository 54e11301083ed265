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

// Batch configures group commit. A transaction costs a commit, and a commit costs a
// disk flush, so with batching on, calls that arrive together share one transaction:
// each still reads and writes as if it had the transaction to itself, and each caller is
// answered only once that transaction has committed. Decides share transactions with
// Decides; the lifecycle writes (Approve, Reject, Publish, Replay, ReportOutcome,
// Cancel) with each other, under the same settings.
type Batch struct {
	// Window is how long a batch waits for more calls while the database is busy with
	// another batch. A call that finds nothing queued and no batch running does not
	// wait.
	Window time.Duration
	// MaxRows is the most calls one transaction holds. 0 or 1 turns batching off: each
	// call has a transaction of its own.
	MaxRows int
	// InFlight is how many Decide batch transactions may run at once (default 1). More
	// than one helps a database that commits transactions in parallel (PostgreSQL);
	// SQLite has a single writer, so there a second batch would only wait for the first.
	// Lifecycle batches run one at a time (see New).
	InFlight int
}

func (b Batch) on() bool { return b.MaxRows > 1 }

// batched is a call waiting in a batcher's queue.
type batched interface {
	// key orders calls: two calls with the same non-empty key never share a batch, and
	// the later one waits until the earlier one's batch has finished, so writes on one
	// job commit in the order they arrived.
	key() string
}

// batcher groups concurrent calls into shared transactions. One loop forms batches in
// arrival order; each batch runs in its own goroutine, at most cap(slots) at a time.
type batcher[C batched] struct {
	run    func([]C) // writes a batch and answers its calls
	window time.Duration
	max    int
	slots  chan struct{} // one token per running batch
	wake   chan struct{} // capacity 1: a call was queued, a batch finished, or Close was called

	mu     sync.Mutex
	queue  []C
	busy   map[string]int // keys of calls in running batches
	closed bool

	running sync.WaitGroup // batches started and not finished
	stopped chan struct{}  // closed when the loop has returned and every batch has finished
	closing sync.Once
}

func newBatcher[C batched](cfg Batch, run func([]C)) *batcher[C] {
	inFlight := cfg.InFlight
	if inFlight < 1 {
		inFlight = 1
	}
	b := &batcher[C]{run: run, window: cfg.Window, max: cfg.MaxRows, slots: make(chan struct{}, inFlight),
		wake: make(chan struct{}, 1), busy: map[string]int{}, stopped: make(chan struct{})}
	go b.loop()
	return b
}

// enqueue queues c for a batch; false when the batcher is closed.
func (b *batcher[C]) enqueue(c C) bool {
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

func (b *batcher[C]) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// close stops taking calls, runs those already queued, and waits for every batch.
func (b *batcher[C]) close() {
	b.closing.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		b.signal()
	})
	<-b.stopped
}

func (b *batcher[C]) loop() {
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
			defer b.finished(batch)
			b.run(batch)
		}()
	}
}

// finished frees a batch's slot and keys, and wakes the loop for calls that waited on
// those keys.
func (b *batcher[C]) finished(batch []C) {
	b.mu.Lock()
	for _, c := range batch {
		if k := c.key(); k != "" {
			if b.busy[k]--; b.busy[k] <= 0 {
				delete(b.busy, k)
			}
		}
	}
	b.mu.Unlock()
	<-b.slots
	b.signal()
}

// next waits for the next batch and a slot to run it in; nil when closed and drained.
func (b *batcher[C]) next() []C {
	for {
		batch, ok := b.gather()
		if !ok || len(batch) > 0 {
			return batch
		}
		<-b.slots // nothing could go after all: wait for the next wake
	}
}

// gather waits for calls that can go and a slot, and takes them; false when closed and
// drained.
func (b *batcher[C]) gather() ([]C, bool) {
	ready, queued, closed := b.state()
	for ready == 0 {
		if closed && queued == 0 {
			return nil, false
		}
		<-b.wake
		ready, queued, closed = b.state()
	}
	// Something can go. When another batch is running, the database is busy anyway:
	// wait a little for company. When nothing runs, go now, so a lone call pays no
	// window.
	if len(b.slots) > 0 && ready < b.max && !closed && b.window > 0 {
		t := time.NewTimer(b.window)
	gather:
		for ready < b.max && !closed {
			select {
			case <-b.wake:
				ready, _, closed = b.state()
			case <-t.C:
				break gather
			}
		}
		t.Stop()
	}
	b.slots <- struct{}{} // calls keep queueing while every slot is taken
	b.mu.Lock()
	defer b.mu.Unlock()
	batch, rest := b.take()
	clear(b.queue[len(rest):])
	b.queue = rest
	for _, c := range batch {
		if k := c.key(); k != "" {
			b.busy[k]++
		}
	}
	return batch, true
}

// take splits the queue into the next batch, in arrival order, and what stays queued: a
// call stays when its key is busy in a running batch or taken by an earlier call. The
// batch may be empty when a batch that finished since freed the slot but no key. The
// caller holds mu.
func (b *batcher[C]) take() (batch, rest []C) {
	held := map[string]bool{}
	rest = b.queue[:0]
	for _, c := range b.queue {
		k := c.key()
		if len(batch) == b.max || (k != "" && (held[k] || b.busy[k] > 0)) {
			rest = append(rest, c)
			continue
		}
		if k != "" {
			held[k] = true
		}
		batch = append(batch, c)
	}
	return batch, rest
}

// state reports how many queued calls could go in a batch now (at most max), how many
// are queued, and whether the batcher is closed.
func (b *batcher[C]) state() (ready, queued int, closed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	held := map[string]bool{}
	for _, c := range b.queue {
		if ready == b.max {
			break
		}
		k := c.key()
		if k != "" && (held[k] || b.busy[k] > 0) {
			continue
		}
		if k != "" {
			held[k] = true
		}
		ready++
	}
	return ready, len(b.queue), b.closed
}

// decideCall is one Decide waiting for its batch.
type decideCall struct {
	ctx   context.Context
	job   *decideJob
	out   DecideResult
	err   error
	alone bool          // the batch failed: write this job in a transaction of its own
	done  chan struct{} // closed when out, err and alone are set
}

// key is "": Decides of one job id may share a batch, which applies them in order.
func (c *decideCall) key() string { return "" }

// decideBatched queues d and waits for its batch. A caller whose context ends first gets
// its context's error; its job may still commit, as with any call whose reply is lost,
// and a retry then answers AlreadyDecided.
func (s *Service) decideBatched(ctx context.Context, d *decideJob) (DecideResult, error) {
	c := &decideCall{ctx: ctx, job: d, done: make(chan struct{})}
	if !s.decides.enqueue(c) {
		return s.decideAlone(ctx, d) // closed: the service still answers, one transaction each
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		return DecideResult{}, ctx.Err()
	}
	if c.alone {
		return s.decideAlone(ctx, d)
	}
	return c.out, c.err
}

// runDecides writes a batch of Decides in one transaction and answers its callers. If
// the transaction fails for any reason but every caller having gone, each job is written
// again in a transaction of its own by its caller, so one bad job never fails its
// batch-mates.
func (s *Service) runDecides(batch []*decideCall) {
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
	ctxs := make([]context.Context, len(live))
	ds := make([]*decideJob, len(live))
	for i, c := range live {
		ctxs[i], ds[i] = c.ctx, c.job
	}
	var outs []DecideResult
	var answers []error
	err := s.runBatch(ctxs, func(ctx context.Context, tx store.Tx) (err error) {
		outs, answers, err = applyBatch(ctx, tx, ds, s.nowMicro()) // now per attempt, as for a transaction of one
		return err
	})
	for i, c := range live {
		switch {
		case err == nil:
			c.out, c.err = outs[i], answers[i]
		case errors.Is(err, errCallersGone):
			c.err = c.ctx.Err()
		default:
			c.alone = true
		}
		close(c.done)
	}
}

// errCallersGone: every caller of a batch left before it committed.
var errCallersGone = errors.New("jobs: every caller of the batch has gone")

// runBatch runs fn as one transaction for callers whose contexts are ctxs: it carries on
// while any of them waits, with the latest of their deadlines. A job id that a
// concurrent transaction inserted or a chain position it took (ErrConflict) runs the
// batch again, as it does a lone call, since the next attempt's snapshot sees that row.
// A panic in fn fails the batch rather than the process, so that each call can run alone
// on its caller's goroutine, where the server's recovery handles it. It returns
// errCallersGone when every caller left first.
func (s *Service) runBatch(ctxs []context.Context, fn func(ctx context.Context, tx store.Tx) error) error {
	ctx, stop := callersContext(ctxs)
	defer stop()
	var err error
	for range conflictRetries {
		err = s.store.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) (err error) {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("jobs: panic in a batch: %v", p)
				}
			}()
			return fn(ctx, tx)
		})
		if !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return errCallersGone
	}
	s.log.Debug("batch transaction failed; running its calls one by one", "calls", len(ctxs), "err", err)
	return err
}

// callersContext returns a context that ends when every one of ctxs has ended: while
// anyone still waits, the batch carries on, and a caller that leaves early does not take
// its batch-mates' writes with it. When every caller has a deadline, the batch has the
// latest of them, so the store sees a deadline as a lone call would. A batch of one
// keeps its caller's values, so its transaction is traced under the caller's span; a
// batch of several is traced on its own.
func callersContext(ctxs []context.Context) (context.Context, func()) {
	var latest time.Time
	for _, c := range ctxs {
		d, ok := c.Deadline()
		if !ok {
			latest = time.Time{}
			break
		}
		if d.After(latest) {
			latest = d
		}
	}
	parent, cancelDeadline := context.Background(), context.CancelFunc(func() {})
	if len(ctxs) == 1 {
		parent = context.WithoutCancel(ctxs[0])
	}
	if !latest.IsZero() {
		parent, cancelDeadline = context.WithDeadline(parent, latest)
	}
	ctx, cancelCtx := context.WithCancel(parent)
	cancel := func() { cancelCtx(); cancelDeadline() }
	var left atomic.Int64
	left.Store(int64(len(ctxs)))
	stops := make([]func() bool, len(ctxs))
	for i, c := range ctxs {
		stops[i] = context.AfterFunc(c, func() {
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
