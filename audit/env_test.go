package audit_test

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agate-pdp/agate/audit"
	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/postgres"
	"github.com/agate-pdp/agate/store/postgres/pgtest"
	"github.com/agate-pdp/agate/store/sqlite"
)

const policyV1 = `version: v1
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
    approval: {roles: [finance-approver, treasurer], quorum: 2, ttl: 24h}
  - id: deny-export
    when: {topic: customer.data.export}
    decision: deny
    reason: exports are denied
`

// policyV2 decides every job policyV1 decides the same way: activating it only drifts.
const policyV2 = policyV1 + `  - id: deny-unused
    when: {topic: unused.topic}
    decision: deny
`

var (
	t0 = time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)

	decider    = jobs.Principal{ID: "svc-orders", Roles: []string{"decide"}}
	alice      = jobs.Principal{ID: "alice@example.com", Roles: []string{"finance-approver"}}
	bob        = jobs.Principal{ID: "bob@example.com", Roles: []string{"admin"}}
	operator   = jobs.Principal{ID: "ops@example.com", Roles: []string{"operator"}}
	carol      = jobs.Principal{ID: "carol@example.com", Roles: []string{"treasurer"}}
	dispatcher = jobs.Principal{ID: "dispatcher", Roles: []string{"dispatch"}}
	owner      = jobs.Principal{ID: "policy-owner", Roles: []string{"policy-admin"}}

	// testKey signs the tests' checkpoints.
	testKey = ed25519.NewKeyFromSeed([]byte("agate audit tests: 32 bytes seed"))
)

// clock is a settable clock shared by the lifecycle, the audit service and the sealer.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// env is one backend with a lifecycle service, an audit service, a sealer and raw SQL
// access for tampering, all on one fake clock.
type env struct {
	name   string
	st     store.Store
	raw    func(t *testing.T, sql string, args ...any) int64 // runs a statement, returns rows affected
	clock  *clock
	svc    *jobs.Service
	audit  *audit.Service
	sealer *audit.Sealer
}

// forEachBackend runs fn on a fresh env per backend, in parallel.
func forEachBackend(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Helper()
	for _, name := range []string{"postgres", "sqlite"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, newEnv(t, name))
		})
	}
}

func newEnv(t *testing.T, backend string) *env {
	t.Helper()
	e := &env{name: backend, clock: &clock{now: t0}}
	switch backend {
	case "sqlite":
		path := filepath.Join(t.TempDir(), "agate.db")
		st, err := sqlite.Open(t.Context(), path, sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		db, err := sql.Open("sqlite", path+"?_busy_timeout=5000")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		e.st = st
		e.raw = func(t *testing.T, q string, args ...any) int64 {
			t.Helper()
			res, err := db.ExecContext(context.Background(), q, args...)
			if err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			n, _ := res.RowsAffected()
			return n
		}
	case "postgres":
		url := pgtest.URL(t)
		e.st = pgtest.OpenURL(t, url, postgres.Options{MaxConns: 8})
		conn, err := pgx.Connect(t.Context(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
		e.raw = func(t *testing.T, q string, args ...any) int64 {
			t.Helper()
			tag, err := conn.Exec(context.Background(), q, args...)
			if err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			return tag.RowsAffected()
		}
	}
	cache, err := snapshots.NewCache(8)
	if err != nil {
		t.Fatal(err)
	}
	if e.svc, err = jobs.New(jobs.Config{Store: e.st, Tracker: snapshots.NewTracker(e.st, cache, nil),
		Cache: cache, Clock: e.clock.Now}); err != nil {
		t.Fatal(err)
	}
	if e.audit, err = audit.New(audit.Config{Store: e.st, Key: testKey,
		Cache: cache, Clock: e.clock.Now}); err != nil {
		t.Fatal(err)
	}
	if e.sealer, err = audit.NewSealer(audit.SealerConfig{Store: e.st, Key: testKey, Clock: e.clock.Now}); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) activate(t *testing.T, policy string) string {
	t.Helper()
	res, err := e.svc.PutPolicy(context.Background(), owner, []byte(policy), true)
	if err != nil {
		t.Fatalf("PutPolicy: %v", err)
	}
	return res.Snapshot.ID
}

// seal seals until nothing is left and returns the last checkpoint written.
func (e *env) seal(t *testing.T) *store.Checkpoint {
	t.Helper()
	var last *store.Checkpoint
	for range 10 {
		e.clock.Advance(time.Millisecond) // each checkpoint scans later than the one before
		cp, err := e.sealer.SealOnce(context.Background())
		if err != nil {
			t.Fatalf("SealOnce: %v", err)
		}
		if cp == nil {
			return last
		}
		last = cp
	}
	t.Fatal("the sealer never ran out of chains to seal")
	return nil
}

func (e *env) events(t *testing.T, job string) []evidence.Event {
	t.Helper()
	ev, err := e.audit.GetEvidence(context.Background(), job)
	if err != nil {
		t.Fatalf("GetEvidence(%s): %v", job, err)
	}
	return ev.Events
}

// request is a job of one of the test policy's kinds.
func request(id, topic, actor string, labels map[string]any) jobs.DecideRequest {
	return jobs.DecideRequest{JobID: id, Topic: topic, Actor: actor, Labels: labels,
		Payload: []byte(`{"amount": 1250.5, "currency": "EUR"}`), TraceID: "trc-" + id}
}

func payment(id string) jobs.DecideRequest {
	return request(id, "finance.payment.execute", "agent-7", map[string]any{"env": "production"})
}

// must(f())(t) is f's result, or fails t with f's error.
func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}
