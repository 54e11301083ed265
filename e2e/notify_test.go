package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/postgres/pgtest"
)

// webhookSecret is the receivers' signing secret.
var webhookSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("e2e-webhook-secret-of-32-bytes!!"))

// webhook is one request a test receiver saw, verified with the Standard Webhooks
// reference library.
type webhook struct {
	id  string
	msg struct {
		Type string
		Data map[string]any
	}
	verified error
	answered bool // answered 2xx while the sender still waited
	at       time.Time
}

// webhookReceiver is a receiver on loopback. While hold is open, it keeps each request
// waiting (deliveries in flight) until hold closes.
type webhookReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	got      []*webhook
	hold     chan struct{}
	holdOnce sync.Once
}

func newWebhookReceiver(t *testing.T, holding bool) *webhookReceiver {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(webhookSecret)
	if err != nil {
		t.Fatal(err)
	}
	r := &webhookReceiver{hold: make(chan struct{})}
	if !holding {
		r.release()
	}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		h := &webhook{id: req.Header.Get("webhook-id"), verified: wh.Verify(b, req.Header), at: time.Now()}
		if err := json.Unmarshal(b, &h.msg); err != nil {
			h.verified = err
		}
		r.mu.Lock()
		r.got = append(r.got, h)
		r.mu.Unlock()
		select {
		case <-r.hold:
		case <-req.Context().Done():
			return
		}
		w.WriteHeader(http.StatusNoContent)
		r.mu.Lock()
		h.answered = req.Context().Err() == nil
		r.mu.Unlock()
	}))
	t.Cleanup(func() { r.release(); r.Close() })
	return r
}

func (r *webhookReceiver) release() { r.holdOnce.Do(func() { close(r.hold) }) }

func (r *webhookReceiver) all() []webhook {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]webhook, len(r.got))
	for i, h := range r.got {
		out[i] = *h
	}
	return out
}

// destinationsFile writes a destinations file for r; loopback is allowed explicitly.
func destinationsFile(t *testing.T, r *webhookReceiver) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notifications.yaml")
	body := fmt.Sprintf("destinations:\n  - name: approvers\n    url: %s/agate\n    secrets: [%s]\n    trusted: true\n    allow_private_network: true\n",
		r.URL, webhookSecret)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func decidePendingPayment(t *testing.T, a *agate, id string) *agatev1.DecideResponse {
	t.Helper()
	d, err := a.decision().Decide(as(ctxT(t), tokDecide), &agatev1.DecideRequest{Job: &agatev1.Job{JobId: id,
		Topic: "finance.payment.execute", Actor: "agent-7", Labels: labels(t, map[string]any{"env": "production"}),
		Payload: []byte(`{"amount":1250.5,"invoice":"INV-1001"}`)}})
	if err != nil {
		t.Fatal(err)
	}
	if d.GetStatus() != agatev1.JobStatus_JOB_STATUS_PENDING_APPROVAL {
		t.Fatalf("%s: %v", id, d.GetStatus())
	}
	return d
}

func notifyBackends() []struct {
	name string
	db   func(t *testing.T) string
} {
	return []struct {
		name string
		db   func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "agate.db") }},
		{"postgres", func(t *testing.T) string { return pgtest.EmptyURL(t) }},
	}
}

// A pending job reaches the approvers' webhook, signed so that the reference library
// verifies it; the approval follows with the same job, and the dead-letter gauge is
// exported.
func TestNotificationWebhook(t *testing.T) {
	t.Parallel()
	for _, b := range notifyBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			r := newWebhookReceiver(t, false)
			a := startAgate(t, b.db(t), "--notifications", destinationsFile(t, r), "--notify-poll", "50ms")
			d := decidePendingPayment(t, a, "notify-pay-1")
			waitUntil(t, 20*time.Second, "the pending_approval webhook", func() bool { return len(r.all()) >= 1 })
			_, err := a.decision().Approve(as(ctxT(t), tokAlice),
				&agatev1.ApproveRequest{JobId: "notify-pay-1", JobHash: d.GetJobHash(), Reason: "invoice checked"})
			if err != nil {
				t.Fatal(err)
			}
			waitUntil(t, 20*time.Second, "the approved webhook", func() bool { return len(r.all()) >= 2 })
			hs := r.all()
			for i, want := range []string{"pending_approval", "approved"} {
				h := hs[i]
				if h.verified != nil || h.msg.Type != "job."+want || h.msg.Data["kind"] != want || h.msg.Data["job_id"] != "notify-pay-1" ||
					h.msg.Data["topic"] != "finance.payment.execute" || h.msg.Data["job_hash"] != d.GetJobHash() ||
					h.msg.Data["rule_id"] != "require-approval-prod-finance" || h.msg.Data["payload"] == nil {
					t.Errorf("webhook %d: %+v", i, h)
				}
			}
			if hs[0].id == hs[1].id || hs[0].msg.Data["expires_at"] == "" {
				t.Errorf("webhooks %+v", hs)
			}
			if code, body := httpGet(t, "http://"+a.httpAddr+"/metrics"); code != 200 || !strings.Contains(body, "agate_notifications_dead_letter 0") {
				t.Errorf("/metrics: %d, no agate_notifications_dead_letter 0", code)
			}
		})
	}
}

// The server is killed with SIGKILL while its webhooks are in flight (the receiver holds
// them). After a restart on the same database every notification of a committed
// transition arrives, each under one webhook-id however often it is sent, and the ones
// in flight at the kill are sent again under the same id.
func TestNotificationCrash(t *testing.T) {
	t.Parallel()
	for _, b := range notifyBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			db := b.db(t)
			r := newWebhookReceiver(t, true)
			flags := []string{"--notifications", destinationsFile(t, r), "--notify-poll", "50ms",
				"--notify-lease", "3s", "--notify-timeout", "2s", "--notify-backoff", "200ms"}
			a := startAgate(t, db, flags...)
			const n = 24
			for i := range n {
				decidePendingPayment(t, a, fmt.Sprintf("crash-notify-%02d", i)) // acknowledged: committed
			}
			waitUntil(t, 20*time.Second, "deliveries in flight", func() bool { return len(r.all()) >= 4 })
			a.kill()
			inFlight := r.all()
			r.release()
			t.Logf("%d webhooks in flight at the kill", len(inFlight))

			a = startAgate(t, db, flags...)
			answered := func() map[string]string { // job id → webhook-id, for webhooks answered 2xx
				out := map[string]string{}
				for _, h := range r.all() {
					if h.answered {
						out[fmt.Sprint(h.msg.Data["job_id"])] = h.id
					}
				}
				return out
			}
			waitUntil(t, 60*time.Second, "every notification answered", func() bool { return len(answered()) == n })
			// A receiver's answer and the row's settling are not one step: wait for both.
			waitUntil(t, 30*time.Second, "every notification settled", func() bool {
				st, err := openNotifyStore(db)
				if err != nil {
					return false
				}
				defer st.Close()
				settled := false
				_ = st.Read(context.Background(), func(ctx context.Context, tx store.Tx) error {
					counts, err := tx.CountNotifications(ctx)
					settled = err == nil && counts[store.NotificationDelivered] == n
					return err
				})
				return settled
			})
			a.stop()

			ids := map[string]string{} // job id → the one webhook-id its notification has
			for _, h := range r.all() {
				job := fmt.Sprint(h.msg.Data["job_id"])
				if h.verified != nil || h.msg.Data["kind"] != "pending_approval" {
					t.Errorf("webhook %+v", h)
				}
				if prev, ok := ids[job]; ok && prev != h.id {
					t.Errorf("%s was sent as %s and as %s", job, prev, h.id)
				}
				ids[job] = h.id
			}
			for _, h := range inFlight {
				if got := answered()[fmt.Sprint(h.msg.Data["job_id"])]; got != h.id {
					t.Errorf("in flight at the kill as %s, delivered as %q", h.id, got)
				}
			}
			st, err := openNotifyStore(db)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			err = st.Read(context.Background(), func(ctx context.Context, tx store.Tx) error {
				counts, err := tx.CountNotifications(ctx)
				if err != nil {
					return err
				}
				if counts[store.NotificationDelivered] != n || len(counts) != 1 {
					t.Errorf("outbox after the restart: %v, want %d delivered", counts, n)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func openNotifyStore(db string) (store.Store, error) {
	if strings.Contains(db, "://") {
		return openPostgres(context.Background(), db)
	}
	return openSQLite(context.Background(), db)
}
