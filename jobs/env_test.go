package jobs_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/identity"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/storetest"
)

// testPolicy is the policy most tests decide under.
const testPolicy = `version: v1
labels:
  env: {type: string, enum: [production, staging, dev], required: true}
rules:
  - id: finance-prod
    when: {topic: finance.payment.execute, env: production}
    decision: require_human
    reason: production payments need a human
    approval: {roles: [admin, finance-approver], quorum: 1, ttl: 24h}
  - id: transfer-quorum
    when: {topic: finance.transfer.large, env: production}
    decision: require_human
    reason: large transfers need two people
    approval: {roles: [finance-approver, treasurer], quorum: 2, ttl: 1h}
  - id: deny-export
    when: {topic: customer.data.export}
    decision: deny
    reason: exports are denied
`

// driftPolicy differs from testPolicy by one rule: reports become denied.
const driftPolicy = testPolicy + `  - id: deny-reports
    when: {topic: reports.generate}
    decision: deny
    reason: reports are frozen
`

// calmPolicy differs from testPolicy without changing any decision the tests make.
const calmPolicy = testPolicy + `  - id: deny-unused
    when: {topic: unused.topic}
    decision: deny
`

var (
	t0 = time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)

	decider    = jobs.Principal{ID: "svc-orders", Roles: []string{"decide"}}
	alice      = jobs.Principal{ID: "alice@example.com", Roles: []string{"finance-approver"}}
	bob        = jobs.Principal{ID: "bob@example.com", Roles: []string{"finance-approver"}}
	carol      = jobs.Principal{ID: "carol@example.com", Roles: []string{"treasurer", "finance-approver"}}
	mallory    = jobs.Principal{ID: "mallory@example.com", Roles: []string{"decide"}}
	dispatcher = jobs.Principal{ID: "dispatcher-1", Roles: []string{"dispatch"}}
	admin      = jobs.Principal{ID: "root@example.com", Roles: []string{"admin", "policy-admin"}}
	operator   = jobs.Principal{ID: "ops@example.com", Roles: []string{"operator"}}
	auditor    = jobs.Principal{ID: "auditor@example.com", Roles: []string{"audit"}}
)

const actor = "agent-7"

// fakeClock is the injected clock: time moves only when a test says so.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// env is one replica (service, tracker, clock) over a store.
type env struct {
	st    store.Store
	svc   *jobs.Service
	clock *fakeClock
	snap  string // the snapshot newEnv activated
}

// commitMode is how a replica commits Decides: each in a transaction of its own, or
// group-committed. Tests of Decide's semantics run in both and must see no difference.
type commitMode struct {
	name  string
	batch jobs.Batch
}

var (
	unbatched = commitMode{"unbatched", jobs.Batch{}}
	// Small batches and two in flight, so the concurrency tests fill several batches
	// that run side by side.
	batched = commitMode{"batched", jobs.Batch{Window: time.Millisecond, MaxRows: 8, InFlight: 2}}
)

// forEachMode runs fn as one subtest per commit mode and backend, each with a fresh
// store. fn may call t.Parallel.
func forEachMode(t *testing.T, fn func(t *testing.T, st store.Store, m commitMode)) {
	t.Helper()
	for _, m := range []commitMode{unbatched, batched} {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			storetest.ForEachBackend(t, func(t *testing.T, st store.Store) { fn(t, st, m) })
		})
	}
}

// newEnv builds a replica over st on a fake clock and makes policy active (when not empty).
func newEnv(t *testing.T, st store.Store, policy string) *env { return unbatched.env(t, st, policy) }

// newRealEnv is newEnv on the real clock, for tests that compare times across goroutines.
func newRealEnv(t *testing.T, st store.Store, policy string) *env {
	return unbatched.realEnv(t, st, policy)
}

// env is newEnv in commit mode m.
func (m commitMode) env(t *testing.T, st store.Store, policy string) *env {
	t.Helper()
	fc := &fakeClock{now: t0}
	return build(t, st, policy, fc.Now, fc, m.batch)
}

// realEnv is newRealEnv in commit mode m.
func (m commitMode) realEnv(t *testing.T, st store.Store, policy string) *env {
	t.Helper()
	return build(t, st, policy, time.Now, nil, m.batch)
}

func build(t *testing.T, st store.Store, policy string, now func() time.Time, fc *fakeClock, batch jobs.Batch) *env {
	t.Helper()
	return buildWith(t, st, policy, now, fc, jobs.Config{Batch: batch})
}

// buildWith is build with more of the service's configuration: cfg's store, tracker,
// cache and clock are filled in.
func buildWith(t *testing.T, st store.Store, policy string, now func() time.Time, fc *fakeClock, cfg jobs.Config) *env {
	t.Helper()
	cache, err := snapshots.NewCache(8)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store, cfg.Tracker, cfg.Cache, cfg.Clock = st, snapshots.NewTracker(st, cache, nil), cache, now
	svc, err := jobs.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close) // before the store closes: cleanups run last-registered first
	e := &env{st: st, svc: svc, clock: fc}
	if policy != "" {
		res, err := svc.PutPolicy(context.Background(), admin, []byte(policy), true)
		if err != nil {
			t.Fatalf("PutPolicy: %v", err)
		}
		e.snap = res.Snapshot.ID
	}
	return e
}

var jobSeq atomic.Int64

// newID returns a job id no other test uses.
func newID(prefix string) string { return fmt.Sprintf("%s-%d", prefix, jobSeq.Add(1)) }

// jobSpec names the kinds of job the test policy decides differently.
type jobSpec struct {
	topic  string
	labels map[string]any
}

var (
	payment  = jobSpec{"finance.payment.execute", map[string]any{"env": "production"}}
	transfer = jobSpec{"finance.transfer.large", map[string]any{"env": "production"}}
	report   = jobSpec{"reports.generate", map[string]any{"env": "dev"}}
	export   = jobSpec{"customer.data.export", map[string]any{"env": "production"}}
)

const paymentPayload = `{"amount": 1250.5, "currency": "EUR", "invoice": "INV-1001"}`

func (s jobSpec) request(id string) jobs.DecideRequest {
	return jobs.DecideRequest{JobID: id, Topic: s.topic, Actor: actor, Labels: s.labels,
		Payload: []byte(paymentPayload), TraceID: "trc-" + id}
}

// decide decides a new job of kind s and returns it.
func (e *env) decide(t *testing.T, s jobSpec) store.Job {
	t.Helper()
	res, err := e.svc.Decide(context.Background(), decider, s.request(newID("job")))
	if err != nil {
		t.Fatalf("Decide: %v", err)
	}
	return res.Job
}

// approved decides a payment and approves it.
func (e *env) approved(t *testing.T) store.Job {
	t.Helper()
	j := e.decide(t, payment)
	res, err := e.svc.Approve(context.Background(), alice, jobs.ApproveRequest{JobID: j.ID, JobHash: j.Hash})
	if err != nil || res.Job.Status != store.StatusApproved {
		t.Fatalf("Approve: %v, status %s", err, res.Job.Status)
	}
	return res.Job
}

// publishedJob decides a job of kind s (payment: also approves it) and publishes it.
func (e *env) publishedJob(t *testing.T, s jobSpec) store.Job {
	t.Helper()
	var j store.Job
	if s.topic == payment.topic {
		j = e.approved(t)
	} else {
		j = e.decide(t, s)
	}
	res, err := e.svc.Publish(context.Background(), dispatcher, jobs.PublishRequest{JobID: j.ID, JobHash: j.Hash})
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	return res.Job
}

func (e *env) job(t *testing.T, id string) store.Job {
	t.Helper()
	v, err := e.svc.GetJob(context.Background(), auditor, id)
	if err != nil {
		t.Fatalf("GetJob(%s): %v", id, err)
	}
	return v.Job
}

// events returns a chain's events after checking that it is intact: seq from 1, each
// event linked to its predecessor, each hash recomputable, each event complete.
func (e *env) events(t *testing.T, chain string) []evidence.Event {
	t.Helper()
	var evs []evidence.Event
	err := e.st.Read(context.Background(), func(ctx context.Context, tx store.Tx) error {
		var err error
		evs, err = tx.ListEvents(ctx, chain)
		return err
	})
	if err != nil {
		t.Fatalf("ListEvents(%s): %v", chain, err)
	}
	checkChain(t, evs)
	return evs
}

func checkChain(t *testing.T, evs []evidence.Event) {
	t.Helper()
	prev := ""
	for i := range evs {
		ev := evs[i]
		if ev.Seq != int64(i+1) || ev.PrevHash != prev {
			t.Fatalf("event %d (%s): seq %d prev %q, want seq %d prev %q", i, ev.Kind, ev.Seq, ev.PrevHash, i+1, prev)
		}
		if h, err := ev.ComputeHash(); err != nil || h != ev.Hash {
			t.Fatalf("event %d (%s): hash %q, recomputed %q (%v)", i, ev.Kind, ev.Hash, h, err)
		}
		if err := evidence.Validate(&ev); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		prev = ev.Hash
	}
}

// kinds lists the events' kinds, a repeat marked with "+", a conflict or refusal with its code.
func kinds(evs []evidence.Event) string {
	var b []string
	for _, ev := range evs {
		k := string(ev.Kind)
		if ev.Repeat {
			k += "+"
		}
		if ev.Conflict != "" {
			k += ":" + ev.Conflict
		}
		b = append(b, k)
	}
	return strings.Join(b, ",")
}

func (e *env) wantKinds(t *testing.T, jobID, want string) []evidence.Event {
	t.Helper()
	evs := e.events(t, jobID)
	if got := kinds(evs); got != want {
		t.Fatalf("evidence of %s = %s, want %s", jobID, got, want)
	}
	return evs
}

// wantErr asserts err is an *Error with code and reason.
func wantErr(t *testing.T, err error, code jobs.Code, reason string) *jobs.Error {
	t.Helper()
	e, ok := jobs.AsError(err)
	if !ok {
		t.Fatalf("err = %v, want %s %s", err, code, reason)
	}
	if e.Code != code || e.Reason != reason {
		t.Fatalf("err = %s %s (%q), want %s %s", e.Code, e.Reason, e.Msg, code, reason)
	}
	return e
}

func wantField(t *testing.T, err error, field string) {
	t.Helper()
	if e := wantErr(t, err, jobs.CodeInvalidArgument, jobs.ReasonInvalidField); e.Field != field {
		t.Fatalf("field = %q (%s), want %q", e.Field, e.Msg, field)
	}
}

func wantNoErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// retryBusy calls f until it returns something other than LOCK_BUSY, as a client would
// (bounded), and counts the busy answers.
func retryBusy(busy *atomic.Int64, f func() error) error {
	var err error
	for range 50 {
		err = f()
		if e, ok := jobs.AsError(err); !ok || e.Reason != jobs.ReasonLockBusy {
			return err
		}
		busy.Add(1)
	}
	return err
}

// principalChain is the chain of p's refused calls without standing.
func principalChain(p jobs.Principal) string {
	k, err := identity.Key(p.ID)
	if err != nil {
		panic(err)
	}
	return evidence.PrincipalChain(k)
}
