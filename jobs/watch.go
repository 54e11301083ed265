package jobs

import (
	"context"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// WatchConfig tunes watch streams. The zero value takes the defaults.
type WatchConfig struct {
	// Poll is how often a stream reads new evidence from the store; default 500 ms.
	// Polling the store, rather than listening on this replica, is what makes a change
	// made on any replica arrive.
	Poll time.Duration
	// Settle is how old an event must be before a stream's cursor passes it: longer
	// than a transaction takes to commit, plus the replicas' clock skew, as for
	// QueryEvidence's settled horizon; default 5 s.
	Settle time.Duration
	// Heartbeat is the longest a stream stays silent: without a change for that long it
	// sends its cursor alone; default 5 s.
	Heartbeat time.Duration
	// Resume is how far back a cursor may resume from; default 7 days. A cursor is only a
	// time, which anyone can write, so without a bound one stream could make the store
	// read the whole history; a client away longer lists the jobs again.
	Resume time.Duration

	page, pages int // events per statement, statements per poll (tests shrink them)
}

func (c WatchConfig) withDefaults() WatchConfig {
	if c.Poll <= 0 {
		c.Poll = 500 * time.Millisecond
	}
	if c.Resume <= 0 {
		c.Resume = 7 * 24 * time.Hour
	}
	if c.Settle <= 0 {
		c.Settle = 5 * time.Second
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 5 * time.Second
	}
	if c.page <= 0 {
		c.page, c.pages = 500, 20 // a stream far behind catches up 10,000 events a poll
	}
	return c
}

// Change is one transition of a job, as a watcher with standing on the job sees it.
type Change struct {
	EventID   string        // the transition's evidence event: watchers deduplicate by it
	Kind      evidence.Kind // decision, approval, rejection, expiry, cancel, conflict, publish, replay, outcome
	At        int64         // µs
	Principal string        // who caused it; ExpiryPrincipal for the expiry sweeper
	Status    Status        // the job's status right after the transition
	Job       JobView       // the job as it is when the change is read, which may be later
}

// WatchItem is one message of a watch stream: a change, or a heartbeat carrying only
// the cursor. Cursor resumes the stream after this message (see Watch).
type WatchItem struct {
	Cursor string
	Change *Change // nil for a heartbeat
}

// Watch streams the transitions of the jobs p has standing on, calling send for each,
// until ctx ends (it then returns nil) or send fails. It is built on the evidence: each
// transition writes exactly one event, with a time and an id, on whichever replica made
// it, and every stream polls the store for new events, so a change made on any replica
// arrives.
//
// Who sees what (per event, by the lifecycle's standing rules on the job as it is when
// the event is read): auditors and operators every job's; a submitter its own jobs';
// an eligible approver those of the jobs it may approve (so the pending approvals for
// its roles, and what became of them); the dispatcher the transitions into and through
// the publish lifecycle (allowed, approved, published, succeeded, failed): jobs ready to
// publish. A watcher without standing on a job learns nothing about it, not even that
// something happened; refusals, repeats and policy activations are not transitions and
// are never sent.
//
// Delivery is at least once, in order of (event time, event id) for settled events: a
// stream delivers a new event as soon as a poll sees it, but its cursor passes an event
// only once it is older than Settle, since a transaction committing late may add an
// older event. Resuming from an item's cursor therefore delivers every transition after
// it, and may repeat some delivered before it (those of the last Settle, or sharing its
// microsecond); deduplicate by event id. An empty cursor starts Settle in the past, so a
// caller that lists first and then watches misses nothing in between.
func (s *Service) Watch(ctx context.Context, p Principal, cursor string, send func(WatchItem) error) error {
	if err := checkPrincipal(p); err != nil {
		return err
	}
	from, err := decodeWatchCursor(cursor)
	if err != nil {
		return err
	}
	w := &watcher{s: s, p: p, cfg: s.watch, seen: map[string]int64{}}
	now := s.nowMicro()
	switch {
	case cursor == "":
		from = now - w.cfg.Settle.Microseconds()
	case from < now-w.cfg.Resume.Microseconds():
		return invalid("cursor", "is older than the %s a stream may resume from: list the jobs again and watch without a cursor", w.cfg.Resume)
	case from > now+time.Minute.Microseconds():
		return invalid("cursor", "is in the future")
	}
	w.pos = position{at: from}
	tick := time.NewTicker(w.cfg.Poll)
	defer tick.Stop()
	quiet := time.Duration(-1) // the first poll answers with at least a heartbeat
	for {
		n, err := w.poll(ctx, send)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if n > 0 {
			quiet = 0
		} else if quiet < 0 || quiet >= w.cfg.Heartbeat {
			if err := send(WatchItem{Cursor: w.cursor()}); err != nil {
				return err
			}
			quiet = 0
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			quiet += w.cfg.Poll
		}
	}
}

// position is a place in the (at, event_id) order of events: the events strictly after
// it remain. {at: T} (no id) is just before every event at T.
type position struct {
	at int64
	id string
}

func (p position) before(at int64, id string) bool {
	return p.at < at || p.at == at && p.id < id
}

// watcher is one stream's state: pos, before which every event has been considered and
// settled, and the events after it already delivered.
type watcher struct {
	s    *Service
	p    Principal
	cfg  WatchConfig
	pos  position
	seen map[string]int64 // event id → at, of delivered events after pos
}

// cursor is the resume point the client keeps: a time, never an event id, so it tells
// a watcher nothing about jobs it has no standing on. Resuming at pos.at repeats the
// events at that microsecond that were already delivered.
func (w *watcher) cursor() string { return encodeWatchCursor(w.pos.at) }

// poll reads the events after pos, sends the transitions p may see that were not sent
// yet, and moves pos past the settled ones. It returns how many it sent.
func (w *watcher) poll(ctx context.Context, send func(WatchItem) error) (int, error) {
	horizon := w.s.nowMicro() - w.cfg.Settle.Microseconds()
	var changes []Change
	var pos position
	var done bool // read to the end, not cut short by cfg.pages
	var settled []string
	err := w.s.read(ctx, "", "", func(ctx context.Context, tx store.Tx) error {
		changes, pos, done, settled = nil, w.pos, false, nil
		views := map[string]*JobView{} // per job, read once per poll; nil: no standing
		q := store.EventQuery{AfterAt: pos.at, AfterEventID: pos.id, Limit: w.cfg.page}
		if pos.id == "" {
			q = store.EventQuery{Since: pos.at, Limit: w.cfg.page}
		}
		// Past cfg.pages statements a poll stops where the cursor has advanced to, and
		// the next poll goes on from there; the unsettled window it always reads to the
		// end, since the cursor cannot pass it.
		for n := 1; ; n++ {
			evs, err := tx.QueryEvents(ctx, q)
			if err != nil {
				return err
			}
			for i := range evs {
				e := &evs[i]
				if _, sent := w.seen[e.EventID]; !sent {
					c, err := w.change(ctx, tx, e, views)
					if err != nil {
						return err
					}
					if c != nil {
						changes = append(changes, *c)
					}
				}
				if e.At <= horizon {
					pos = position{e.At, e.EventID}
					settled = append(settled, e.EventID)
				}
			}
			if len(evs) < q.Limit {
				done = true
				return nil
			}
			last := evs[len(evs)-1]
			if n >= w.cfg.pages && last.At <= horizon {
				return nil
			}
			q = store.EventQuery{AfterAt: last.At, AfterEventID: last.EventID, Limit: w.cfg.page}
		}
	})
	if err != nil {
		return 0, err
	}
	if done && pos.before(horizon+1, "") {
		pos = position{at: horizon + 1} // every event up to the horizon has been read
	}
	w.pos = pos
	for _, id := range settled {
		delete(w.seen, id)
	}
	for id, at := range w.seen {
		if at < pos.at {
			delete(w.seen, id)
		}
	}
	for i := range changes {
		c := &changes[i]
		if c.At > horizon {
			w.seen[c.EventID] = c.At
		}
		if err := send(WatchItem{Cursor: w.cursor(), Change: c}); err != nil {
			return i, err
		}
	}
	return len(changes), nil
}

// change returns the change e makes that p may see, or nil.
func (w *watcher) change(ctx context.Context, tx store.Tx, e *evidence.Event, views map[string]*JobView) (*Change, error) {
	if !transition(e) {
		return nil, nil
	}
	v, ok := views[e.JobID]
	if !ok {
		j, err := tx.GetJob(ctx, e.JobID, false)
		switch {
		case err == nil:
			jv, err := view(ctx, tx, j)
			if err != nil {
				return nil, err
			}
			v = &jv
		case !errors.Is(err, store.ErrNotFound):
			return nil, err
		}
		views[e.JobID] = v
	}
	if v == nil || !mayWatch(w.p, &v.Job, Status(e.Status)) {
		return nil, nil
	}
	return &Change{EventID: e.EventID, Kind: e.Kind, At: e.At, Principal: e.Principal,
		Status: Status(e.Status), Job: *v}, nil
}

// transition reports whether e records a change of its job's state: refusals, repeats,
// conflicts that left the job as it was, and policy activations do not.
func transition(e *evidence.Event) bool {
	if e.Repeat || strings.HasPrefix(e.JobID, evidence.PrincipalChainPrefix) {
		return false
	}
	switch e.Kind {
	case evidence.KindDecision, evidence.KindApproval, evidence.KindRejection, evidence.KindExpiry,
		evidence.KindCancel, evidence.KindPublish, evidence.KindReplay, evidence.KindOutcome:
		return true
	case evidence.KindConflict:
		return e.Conflict == ReasonSnapshotDrift // the move to conflict; the others change nothing
	}
	return false
}

// mayWatch: WatchJobs, per event. Whoever may view the job (mayView), and the dispatcher
// for transitions into and through the publish lifecycle, whose jobs it may publish,
// replay and report on anyway.
func mayWatch(p Principal, j *store.Job, after Status) bool {
	if mayView(p, j) {
		return true
	}
	switch after {
	case StatusAllowed, StatusApproved, StatusAllowedAndPublished, StatusApprovedAndPublished,
		StatusSucceeded, StatusFailed:
		return mayDispatch(p, j)
	}
	return false
}

const watchCursorPrefix = "w1:"

func encodeWatchCursor(at int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(watchCursorPrefix + strconv.FormatInt(at, 10)))
}

// decodeWatchCursor returns the time a cursor resumes at; 0 for "".
func decodeWatchCursor(c string) (int64, error) {
	if c == "" {
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	s, ok := strings.CutPrefix(string(b), watchCursorPrefix)
	if err != nil || !ok {
		return 0, invalid("cursor", "not a cursor this service issued")
	}
	at, err := strconv.ParseInt(s, 10, 64)
	if err != nil || at < 0 {
		return 0, invalid("cursor", "not a cursor this service issued")
	}
	return at, nil
}
