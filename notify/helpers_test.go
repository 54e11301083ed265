package notify_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/notify"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
)

const policy = `version: v1
rules:
  - id: finance-prod
    when: {topic: finance.>, env: production}
    decision: require_human
    reason: production payments need a human
    approval: {roles: [finance-approver], quorum: 1, ttl: 24h}
`

var (
	admin    = jobs.Principal{ID: "root@example.com", Roles: []string{"policy-admin"}}
	decider  = jobs.Principal{ID: "svc-orders", Roles: []string{"decide"}}
	approver = jobs.Principal{ID: "alice@example.com", Roles: []string{"finance-approver"}}
)

// secret makes a whsec_ secret of n bytes of fill.
func secret(fill byte) string {
	return "whsec_" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat(string(fill), 32)))
}

func newJobs(t *testing.T, st store.Store) *jobs.Service {
	t.Helper()
	cache, err := snapshots.NewCache(4)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := jobs.New(jobs.Config{Store: st, Tracker: snapshots.NewTracker(st, cache, nil), Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	if _, err := svc.PutPolicy(context.Background(), admin, []byte(policy), true); err != nil {
		t.Fatal(err)
	}
	return svc
}

// pending decides a job that waits for approval.
func pending(t *testing.T, svc *jobs.Service, id string) store.Job {
	t.Helper()
	res, err := svc.Decide(context.Background(), decider, jobs.DecideRequest{JobID: id, Topic: "finance.payment.execute",
		Actor: "agent-7", Labels: map[string]any{"env": "production"}, Payload: []byte(`{"amount":12.5,"iban":"DE00"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Job.Status != store.StatusPendingApproval {
		t.Fatalf("status %s", res.Job.Status)
	}
	return res.Job
}

// hit is one request a receiver saw.
type hit struct {
	id, timestamp, signature string
	body                     []byte
	at                       time.Time
	verified                 error
}

// receiver is a webhook receiver on loopback that verifies each request with the
// Standard Webhooks reference library and answers with status(n) for the n-th request
// (from 1).
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	hits   []hit
	n      atomic.Int64
	status func(n int64) int
	wh     *standardwebhooks.Webhook
}

func newReceiver(t *testing.T, whsec string, status func(n int64) int) *receiver {
	t.Helper()
	r := &receiver{status: status}
	if whsec != "" {
		wh, err := standardwebhooks.NewWebhook(whsec)
		if err != nil {
			t.Fatal(err)
		}
		r.wh = wh
	}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		h := hit{id: req.Header.Get("webhook-id"), timestamp: req.Header.Get("webhook-timestamp"),
			signature: req.Header.Get("webhook-signature"), body: b, at: time.Now()}
		if r.wh != nil {
			h.verified = r.wh.Verify(b, req.Header)
		}
		if req.Header.Get("Authorization") != "" {
			h.verified = fmt.Errorf("an Authorization header was sent")
		}
		r.mu.Lock()
		r.hits = append(r.hits, h)
		r.mu.Unlock()
		code := http.StatusNoContent
		if r.status != nil {
			code = r.status(r.n.Add(1))
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) all() []hit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hit(nil), r.hits...)
}

// destination parses one destination of the receiver's.
func destination(t *testing.T, yaml string) *notify.Destination {
	t.Helper()
	ds, err := notify.Parse([]byte("destinations:\n"+yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	return ds[0]
}

func deliverer(t *testing.T, st store.Store, cfg notify.Config, dests ...*notify.Destination) *notify.Deliverer {
	t.Helper()
	cfg.Store, cfg.Destinations = st, dests
	if cfg.Poll == 0 {
		cfg.Poll = 10 * time.Millisecond
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = 20 * time.Millisecond
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	d, err := notify.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// run runs d until the test ends.
func run(t *testing.T, d *notify.Deliverer) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// waitFor polls cond until it holds or 15 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func notifications(t *testing.T, st store.Store, q store.NotificationQuery) (ns []store.Notification) {
	t.Helper()
	err := st.Read(context.Background(), func(ctx context.Context, tx store.Tx) (err error) {
		ns, err = tx.ListNotifications(ctx, q)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func message(t *testing.T, b []byte) notify.Message {
	t.Helper()
	var m notify.Message
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("body %s: %v", b, err)
	}
	return m
}
