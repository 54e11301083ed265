package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/identity"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
)

// Group commit of the lifecycle writes. A batch locks its jobs in one statement, runs
// each call's checks and writes in arrival order against what the batch has written so
// far (a writeTx), and then stores the jobs it changed, the approvals, the events and
// the notifications in one statement each. A call refused with a plain *Error leaves
// nothing behind, as its own transaction's rollback would; one refused after commit
// (refuseAfterCommit) keeps its evidence. Two calls on one job never share a batch: the
// later waits for the earlier's batch to finish (see batched.key).

// writeCall is one lifecycle write waiting for its batch.
type writeCall struct {
	ctx context.Context
	p   Principal
	c   call
	may standingFunc
	fn  jobFunc

	// Set by the batch, read by the caller once done is closed.
	err      error          // the answer: nil, or the refusal of a caller with standing
	plain    *Error         // a refusal whose writes were dropped: its evidence is recorded after
	outsider *errNoStanding // the caller has no standing: its attempt is on its own chain
	limited  int8           // the caller's allowance of calls without standing: 0 unasked, 1 taken, -1 none left
	alone    bool           // the batch failed: run this call in a transaction of its own
	done     chan struct{}
}

func (c *writeCall) key() string { return c.c.jobID }

// onJobBatched queues a lifecycle write and waits for its batch; then it answers as
// onJobAlone would. A caller whose context ends first gets its context's error; its write
// may still commit, as with any call whose reply is lost, and a retry sees it (already_*).
func (s *Service) onJobBatched(ctx context.Context, w *writeCall) error {
	if !s.writes.enqueue(w) {
		return s.onJobAlone(ctx, w.p, w.c, w.may, w.fn) // closed: one transaction each
	}
	select {
	case <-w.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	switch {
	case w.alone:
		return s.onJobAlone(ctx, w.p, w.c, w.may, w.fn)
	case w.outsider != nil && w.limited < 0:
		s.log.Warn("refused calls without standing over the limit; not recording more", "principal", w.p.ID, "call", w.c.name)
		return rateLimited()
	case w.outsider != nil:
		return notFound("job", w.c.jobID)
	case w.plain != nil:
		s.recordRefusal(ctx, w.plain, w.p, w.c, w.may)
	}
	return w.err
}

// runWrites writes a batch of lifecycle calls in one transaction and answers its
// callers; when the transaction fails, each call runs again alone on its caller's
// goroutine, so one bad call never fails its batch-mates.
func (s *Service) runWrites(batch []*writeCall) {
	live := batch[:0:0]
	for _, w := range batch {
		if err := w.ctx.Err(); err != nil {
			w.err = err // its caller has gone
			close(w.done)
			continue
		}
		live = append(live, w)
	}
	if len(live) == 0 {
		return
	}
	ctxs := make([]context.Context, len(live))
	for i, w := range live {
		ctxs[i] = w.ctx
	}
	err := s.runBatch(ctxs, func(ctx context.Context, tx store.Tx) error {
		return s.applyWrites(ctx, tx, live, s.nowMicro())
	})
	for _, w := range live {
		switch {
		case err == nil:
		case errors.Is(err, errCallersGone):
			w.err = w.ctx.Err()
		default:
			w.alone = true
		}
		close(w.done)
	}
}

// applyWrites is the body of a batch's transaction: each call in turn, as if in a
// transaction of its own, against the jobs the batch locked.
func (s *Service) applyWrites(ctx context.Context, tx store.Tx, calls []*writeCall, now int64) error {
	ids := make([]string, len(calls)) // distinct: the batcher keys calls by job id
	for i, w := range calls {
		ids[i] = w.c.jobID
	}
	slices.Sort(ids)
	b, err := lockBatch(ctx, tx, ids)
	if err != nil {
		return err
	}
	for _, w := range calls {
		w.err, w.plain, w.outsider = nil, nil, nil
		cur, exists := b.jobs[w.c.jobID]
		wt := b.begin()
		if !exists || !w.may(w.p, &cur) {
			w.outsider = &errNoStanding{exists: exists}
			if w.limited == 0 { // once per call, whatever the attempts
				w.limited = 1
				if !s.outsiders.take(w.p.ID, s.clock()) {
					w.limited = -1
				}
			}
			if w.limited < 0 {
				continue
			}
			if err := outsiderEvent(ctx, wt, w.p, w.c, exists, now); err != nil {
				return err
			}
			wt.keep()
			continue
		}
		j := cur
		err := w.fn(ctx, wt, &j, now)
		if answer, ok := asRefusal(err); ok {
			w.err = answer
			wt.keep()
			continue
		}
		if e, ok := err.(*Error); ok {
			w.err, w.plain = e, e // dropped, as a lone call's transaction would roll back
			continue
		}
		if err != nil {
			return err
		}
		wt.keep()
	}
	return b.flush(ctx)
}

// outsiderEvent records, on p's own chain, an attempt on a job p has no standing on (or
// that does not exist).
func outsiderEvent(ctx context.Context, tx store.Tx, p Principal, c call, exists bool, now int64) error {
	key, err := identity.Key(p.ID)
	if err != nil {
		return invalid("principal", "the caller's id %s", err) // checkPrincipal refuses it first
	}
	why := "the caller has no standing on the job"
	if !exists {
		why = "no such job"
	}
	e := evidence.Event{JobID: evidence.PrincipalChain(key), Kind: evidence.KindRefusal, At: now,
		Principal: p.ID, AuthMethod: p.Auth, Conflict: EvidenceNoStanding, PresentedHash: c.presented,
		Reason: fmt.Sprintf("%s of job %s: %s", c.name, c.jobID, why)}
	return appendEvent(ctx, tx, &e)
}

// writeBatch is what a batch has written so far, kept until its end, when flush stores
// it in one statement per table.
type writeBatch struct {
	tx        store.Tx
	jobs      map[string]store.Job // the locked jobs, as the batch left them
	changed   []string             // ids of the jobs the batch changed, in id order at flush
	approvals []store.Approval
	events    []evidence.Event
	notes     []store.Notification

	// The stored approvals and events of the batch's jobs, read for all of them in one
	// statement each when a call first asks for those of one (nil until then).
	storedApprovals map[string][]store.Approval
	storedEvents    map[string][]evidence.Event
}

// approvalsOf returns the stored approvals of a job of the batch.
func (b *writeBatch) approvalsOf(ctx context.Context, jobID string) ([]store.Approval, error) {
	if b.storedApprovals == nil {
		as, err := b.tx.ListApprovalsOf(ctx, b.ids())
		if err != nil {
			return nil, err
		}
		b.storedApprovals = make(map[string][]store.Approval, len(b.jobs))
		for _, a := range as {
			b.storedApprovals[a.JobID] = append(b.storedApprovals[a.JobID], a)
		}
	}
	return b.storedApprovals[jobID], nil
}

// eventsOf returns the stored chain of a job of the batch.
func (b *writeBatch) eventsOf(ctx context.Context, jobID string) ([]evidence.Event, error) {
	if b.storedEvents == nil {
		es, err := b.tx.ListChainEvents(ctx, store.ChainQuery{JobIDs: b.ids()})
		if err != nil {
			return nil, err
		}
		b.storedEvents = make(map[string][]evidence.Event, len(b.jobs))
		for _, e := range es {
			b.storedEvents[e.JobID] = append(b.storedEvents[e.JobID], e)
		}
	}
	return b.storedEvents[jobID], nil
}

// ids lists the batch's jobs.
func (b *writeBatch) ids() []string {
	ids := make([]string, 0, len(b.jobs))
	for id := range b.jobs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// lockBatch locks the jobs of ids (sorted) in one statement.
func lockBatch(ctx context.Context, tx store.Tx, ids []string) (*writeBatch, error) {
	js, err := tx.GetJobs(ctx, ids, true)
	if err != nil {
		return nil, err
	}
	b := &writeBatch{tx: tx, jobs: make(map[string]store.Job, len(js))}
	for _, j := range js {
		b.jobs[j.ID] = j
	}
	return b, nil
}

// begin starts one call's writes.
func (b *writeBatch) begin() *writeTx { return &writeTx{Tx: b.tx, b: b} }

// flush stores what the batch wrote.
func (b *writeBatch) flush(ctx context.Context) error {
	if len(b.changed) > 0 {
		slices.Sort(b.changed)
		js := make([]store.Job, len(b.changed))
		for i, id := range b.changed {
			js[i] = b.jobs[id]
		}
		if err := b.tx.UpdateJobs(ctx, js); err != nil {
			return err
		}
	}
	if len(b.approvals) > 0 {
		if err := b.tx.InsertApprovals(ctx, b.approvals); err != nil {
			return err
		}
	}
	if len(b.events) > 0 {
		if err := b.tx.AppendEvents(ctx, b.events); err != nil {
			return err
		}
	}
	if len(b.notes) > 0 {
		return b.tx.InsertNotifications(ctx, b.notes)
	}
	return nil
}

// errNotBatched fails a batch whose call wrote what a batch does not hold; its calls
// then run alone.
var errNotBatched = errors.New("jobs: a write a lifecycle batch does not hold")

// writeTx is the store.Tx one call of a batch runs on: its reads see the database as the
// batch's transaction does, plus what the batch and the call have written; its writes
// are kept aside until keep adds them to the batch, or dropped with the call.
type writeTx struct {
	store.Tx // the batch's transaction, for reads
	b        *writeBatch

	jobs      map[string]store.Job
	approvals []store.Approval
	events    []evidence.Event
	notes     []store.Notification
}

// keep adds the call's writes to its batch.
func (t *writeTx) keep() {
	b := t.b
	for id, j := range t.jobs {
		if _, ok := b.jobs[id]; !ok {
			continue // UpdateJob refused it
		}
		if !slices.Contains(b.changed, id) {
			b.changed = append(b.changed, id)
		}
		b.jobs[id] = j
	}
	b.approvals = append(b.approvals, t.approvals...)
	b.events = append(b.events, t.events...)
	b.notes = append(b.notes, t.notes...)
}

// GetJob reads a job of the batch as the batch and the call left it.
func (t *writeTx) GetJob(ctx context.Context, id string, forUpdate bool) (store.Job, error) {
	if j, ok := t.jobs[id]; ok {
		return j, nil
	}
	if j, ok := t.b.jobs[id]; ok {
		return j, nil
	}
	return store.Job{}, errNotBatched // every job a call reads is the one the batch locked for it
}

// UpdateJob changes a job of the batch.
func (t *writeTx) UpdateJob(_ context.Context, j store.Job) error {
	if _, ok := t.b.jobs[j.ID]; !ok {
		return errNotBatched
	}
	if t.jobs == nil {
		t.jobs = map[string]store.Job{}
	}
	t.jobs[j.ID] = j
	return nil
}

// InsertApproval adds an approval; ErrConflict when the batch or the call holds one by
// the same approver of the same revision.
func (t *writeTx) InsertApproval(_ context.Context, a store.Approval) error {
	same := func(o store.Approval) bool {
		return o.JobID == a.JobID && o.Revision == a.Revision && o.Approver == a.Approver
	}
	if slices.ContainsFunc(t.b.approvals, same) || slices.ContainsFunc(t.approvals, same) {
		return fmt.Errorf("approval of %s revision %d by %s: %w", a.JobID, a.Revision, a.Approver, store.ErrConflict)
	}
	t.approvals = append(t.approvals, a)
	return nil
}

// ListApprovals reads the stored approvals and adds those of the batch and the call.
func (t *writeTx) ListApprovals(ctx context.Context, jobID string, revision int) ([]store.Approval, error) {
	if _, ok := t.b.jobs[jobID]; !ok {
		return t.Tx.ListApprovals(ctx, jobID, revision)
	}
	stored, err := t.b.approvalsOf(ctx, jobID)
	if err != nil {
		return nil, err
	}
	var as []store.Approval
	for _, a := range slices.Concat(stored, t.b.approvals, t.approvals) {
		if a.JobID == jobID && a.Revision == revision {
			as = append(as, a)
		}
	}
	return as, nil
}

// ChainHead is the head of a chain after what the batch and the call appended.
func (t *writeTx) ChainHead(ctx context.Context, jobID string) (int64, string, error) {
	for _, es := range [][]evidence.Event{t.events, t.b.events} {
		for i := len(es) - 1; i >= 0; i-- {
			if es[i].JobID == jobID {
				return es[i].Seq, es[i].Hash, nil
			}
		}
	}
	return t.Tx.ChainHead(ctx, jobID)
}

// AppendEvent adds a sealed event.
func (t *writeTx) AppendEvent(_ context.Context, e evidence.Event) error {
	t.events = append(t.events, e)
	return nil
}

// AppendEvents adds sealed events.
func (t *writeTx) AppendEvents(_ context.Context, es []evidence.Event) error {
	t.events = append(t.events, es...)
	return nil
}

// ListEvents reads a stored chain and adds what the batch and the call appended to it.
func (t *writeTx) ListEvents(ctx context.Context, jobID string) ([]evidence.Event, error) {
	var es []evidence.Event
	var err error
	if _, ok := t.b.jobs[jobID]; ok {
		es, err = t.b.eventsOf(ctx, jobID)
		es = slices.Clone(es)
	} else {
		es, err = t.Tx.ListEvents(ctx, jobID)
	}
	if err != nil {
		return nil, err
	}
	for _, e := range slices.Concat(t.b.events, t.events) {
		if e.JobID == jobID {
			es = append(es, e)
		}
	}
	return es, nil
}

// InsertNotifications adds outbox rows.
func (t *writeTx) InsertNotifications(_ context.Context, ns []store.Notification) error {
	t.notes = append(t.notes, ns...)
	return nil
}

// The writes a lifecycle call never makes fail its batch.

func (t *writeTx) InsertJob(context.Context, store.Job) error { return errNotBatched }
func (t *writeTx) InsertJobs(context.Context, []store.Job) ([]bool, error) {
	return nil, errNotBatched
}
func (t *writeTx) UpdateJobs(context.Context, []store.Job) error           { return errNotBatched }
func (t *writeTx) InsertApprovals(context.Context, []store.Approval) error { return errNotBatched }
func (t *writeTx) ListApprovalsOf(context.Context, []string) ([]store.Approval, error) {
	return nil, errNotBatched
}
func (t *writeTx) PutSnapshot(context.Context, snapshots.Snapshot) (bool, error) {
	return false, errNotBatched
}
func (t *writeTx) SetActiveSnapshot(context.Context, string, time.Time, string) error {
	return errNotBatched
}
func (t *writeTx) AppendCheckpoint(context.Context, store.Checkpoint) error { return errNotBatched }
func (t *writeTx) ClaimNotifications(context.Context, string, int64, int64, int) ([]store.Notification, error) {
	return nil, errNotBatched
}
func (t *writeTx) SettleNotification(context.Context, string, store.Notification) error {
	return errNotBatched
}
func (t *writeTx) PruneNotifications(context.Context, int64, int) (int, error) {
	return 0, errNotBatched
}
func (t *writeTx) RequeueNotifications(context.Context, []string, int64) (int, error) {
	return 0, errNotBatched
}
