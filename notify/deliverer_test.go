package notify_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/notify"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/storetest"
)

// A pending job and its approval reach a receiver that verifies them with the reference
// library; the untrusted destination gets no payload, the trusted one does, the Slack
// one a text; each kind goes only where it is wanted.
func TestDeliver(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		svc := newJobs(t, st)
		plain, trusted, slack := newReceiver(t, secret('p'), nil), newReceiver(t, secret('t'), nil), newReceiver(t, "", nil)
		d := deliverer(t, st, notify.Config{},
			destination(t, fmt.Sprintf("  - {name: plain, url: %s, secrets: [%s], allow_private_network: true}", plain.URL, secret('p'))),
			destination(t, fmt.Sprintf("  - {name: trusted, url: %s, secrets: [%s], trusted: true, kinds: [approved], allow_private_network: true}", trusted.URL, secret('t'))),
			destination(t, fmt.Sprintf("  - {name: slack, url: %s, format: slack, topics: ['crm.>'], allow_private_network: true}", slack.URL)))
		run(t, d)

		j := pending(t, svc, "pay-1")
		if _, err := svc.Approve(context.Background(), approver, jobs.ApproveRequest{JobID: j.ID, JobHash: j.Hash, Reason: "invoice checked"}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "both notifications delivered", func() bool {
			return len(notifications(t, st, store.NotificationQuery{State: store.NotificationDelivered})) == 2
		})
		ps := plain.all()
		if len(ps) != 2 {
			t.Fatalf("plain receiver got %d requests, want 2", len(ps))
		}
		for _, h := range ps {
			if h.verified != nil {
				t.Errorf("plain: %v", h.verified)
			}
			if strings.Contains(string(h.body), "iban") {
				t.Errorf("an untrusted destination got the payload: %s", h.body)
			}
		}
		m := message(t, ps[0].body)
		want := notify.Data{NotificationID: ps[0].id, Kind: "pending_approval", JobID: j.ID, Topic: j.Topic, Actor: "agent-7",
			SubmittedBy: decider.ID, Status: "pending_approval", Decision: "require_human", RuleID: "finance-prod",
			Reason: "production payments need a human", JobHash: j.Hash, PolicySnapshot: j.Snapshot, Revision: 1,
			ApprovalRoles: []string{"finance-approver"}, Quorum: 1, ExpiresAt: time.UnixMicro(j.ExpiresAt).UTC().Format(time.RFC3339Nano),
			Principal: decider.ID, EventID: m.Data.EventID, TraceID: j.TraceID}
		if m.Type != "job.pending_approval" || fmt.Sprint(m.Data) != fmt.Sprint(want) || m.Data.EventID == "" {
			t.Errorf("message\n %+v\nwant\n %+v", m, want)
		}
		if a := message(t, ps[1].body); a.Data.Kind != "approved" || a.Data.Principal != approver.ID || a.Data.Note != "invoice checked" || a.Data.Status != "approved" {
			t.Errorf("approval message %+v", a)
		}
		ts := trusted.all()
		if len(ts) != 1 || ts[0].verified != nil {
			t.Fatalf("trusted receiver: %+v", ts)
		}
		if got := message(t, ts[0].body); got.Data.Kind != "approved" || string(got.Data.Payload) != `{"amount":12.5,"iban":"DE00"}` {
			t.Errorf("trusted message %s", ts[0].body)
		}
		if ts[0].id == ps[0].id || ts[0].id != ps[1].id {
			t.Errorf("webhook-id: the approval has %s at one destination and %s at another", ts[0].id, ps[1].id)
		}
		if n := len(slack.all()); n != 0 {
			t.Errorf("the slack destination for crm.> got %d requests", n)
		}
	})
}

func TestSlackFormat(t *testing.T) {
	t.Parallel()
	st := storetest.OpenSQLite(t)
	svc := newJobs(t, st)
	r := newReceiver(t, "", nil)
	run(t, deliverer(t, st, notify.Config{},
		destination(t, fmt.Sprintf("  - {name: slack, url: %s, format: slack, trusted: true, kinds: [approved], allow_private_network: true}", r.URL))))
	j := pending(t, svc, "pay-slack")
	if _, err := svc.Approve(context.Background(), approver, jobs.ApproveRequest{JobID: j.ID, JobHash: j.Hash,
		Reason: "<!channel> fine, see <https://evil.example|the invoice>"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a slack message", func() bool { return len(r.all()) == 1 })
	var body map[string]string
	if err := json.Unmarshal(r.all()[0].body, &body); err != nil || len(body) != 1 {
		t.Fatalf("slack body %s: %v", r.all()[0].body, err)
	}
	text := body["text"]
	for _, want := range []string{"*Approved*", "`pay-slack`", "finance.payment.execute", "finance-prod", j.Hash,
		"by `alice@example.com`", "&lt;!channel&gt; fine", "\"iban\": \"DE00\""} {
		if !strings.Contains(text, want) {
			t.Errorf("slack text lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "<!channel>") || strings.Contains(text, "<https://") {
		t.Errorf("a reason made a Slack mention or link:\n%s", text)
	}
}

// A receiver that fails twice gets the notification on the third attempt, each retry
// after a growing backoff, with the same webhook-id every time.
func TestRetryWithBackoff(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		svc := newJobs(t, st)
		r := newReceiver(t, secret('r'), func(n int64) int {
			if n <= 2 {
				return http.StatusServiceUnavailable
			}
			return http.StatusOK
		})
		const backoff = 100 * time.Millisecond
		run(t, deliverer(t, st, notify.Config{Backoff: backoff},
			destination(t, fmt.Sprintf("  - {name: r, url: %s, secrets: [%s], allow_private_network: true}", r.URL, secret('r')))))
		pending(t, svc, "retry-1")
		waitFor(t, "delivery", func() bool {
			return len(notifications(t, st, store.NotificationQuery{State: store.NotificationDelivered})) == 1
		})
		hs := r.all()
		if len(hs) != 3 {
			t.Fatalf("%d requests, want 3", len(hs))
		}
		for i, h := range hs {
			if h.id != hs[0].id || h.verified != nil {
				t.Errorf("attempt %d: webhook-id %s (first %s), verified %v", i+1, h.id, hs[0].id, h.verified)
			}
		}
		// Waits are Backoff·2ⁿ⁻¹ less up to half of it: at least 50 ms, then 100 ms.
		if gap := hs[1].at.Sub(hs[0].at); gap < backoff/2 {
			t.Errorf("first retry after %s, want at least %s", gap, backoff/2)
		}
		if gap := hs[2].at.Sub(hs[1].at); gap < backoff {
			t.Errorf("second retry after %s, want at least %s", gap, backoff)
		}
		n := notifications(t, st, store.NotificationQuery{})[0]
		if n.Attempts != 2 || n.LastError != "" || len(n.DeliveredTo) != 1 {
			t.Errorf("settled as %+v", n)
		}
	})
}

// A receiver that always fails ends in dead-letter after MaxAttempts requests, and the
// gauge counts it. A destination that succeeded is not sent the notification again
// while another is retried.
func TestDeadLetter(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		svc := newJobs(t, st)
		bad := newReceiver(t, "", func(int64) int { return http.StatusInternalServerError })
		good := newReceiver(t, "", nil)
		reg := prometheus.NewRegistry()
		d := deliverer(t, st, notify.Config{MaxAttempts: 3, Backoff: 5 * time.Millisecond, Registerer: reg},
			destination(t, fmt.Sprintf("  - {name: bad, url: %s, format: slack, allow_private_network: true}", bad.URL)),
			destination(t, fmt.Sprintf("  - {name: good, url: %s, format: slack, allow_private_network: true}", good.URL)))
		run(t, d)
		pending(t, svc, "dead-1")
		waitFor(t, "dead-letter", func() bool {
			return len(notifications(t, st, store.NotificationQuery{State: store.NotificationDead})) == 1
		})
		n := notifications(t, st, store.NotificationQuery{State: store.NotificationDead})[0]
		if n.Attempts != 3 || !strings.Contains(n.LastError, "bad: HTTP 500") || fmt.Sprint(n.DeliveredTo) != "[good]" || n.DoneAt == 0 {
			t.Errorf("dead-lettered as %+v", n)
		}
		if b, g := len(bad.all()), len(good.all()); b != 3 || g != 1 {
			t.Errorf("bad receiver got %d requests (want 3), good %d (want 1)", b, g)
		}
		if err := d.RefreshGauges(context.Background()); err != nil {
			t.Fatal(err)
		}
		if v := testutil.ToFloat64(gauge(t, reg, "agate_notifications_dead_letter")); v != 1 {
			t.Errorf("agate_notifications_dead_letter = %v, want 1", v)
		}
	})
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name})
			g.Set(mf.GetMetric()[0].GetGauge().GetValue())
			return g
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

// Two deliverers on one database never both send a notification: every one arrives
// exactly once.
func TestTwoDeliverersSendOnce(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		svc := newJobs(t, st)
		r := newReceiver(t, secret('s'), func(int64) int { time.Sleep(2 * time.Millisecond); return http.StatusOK })
		dest := fmt.Sprintf("  - {name: r, url: %s, secrets: [%s], allow_private_network: true}", r.URL, secret('s'))
		const n = 60
		for i := range n {
			pending(t, svc, fmt.Sprint("twice-", i))
		}
		run(t, deliverer(t, st, notify.Config{Owner: "replica-a", Batch: 4}, destination(t, dest)))
		run(t, deliverer(t, st, notify.Config{Owner: "replica-b", Batch: 4}, destination(t, dest)))
		waitFor(t, "every delivery", func() bool {
			return len(notifications(t, st, store.NotificationQuery{State: store.NotificationDelivered})) == n
		})
		seen := map[string]int{}
		for _, h := range r.all() {
			seen[h.id]++
			if h.verified != nil {
				t.Error(h.verified)
			}
		}
		if len(seen) != n {
			t.Errorf("%d distinct notifications arrived, want %d", len(seen), n)
		}
		for id, c := range seen {
			if c != 1 {
				t.Errorf("%s arrived %d times", id, c)
			}
		}
	})
}

// The dialer refuses loopback and private addresses unless the destination (or the
// deliverer) allows them: a name resolving to 127.0.0.1 is refused as the connection
// is made, and the receiver never sees a request.
func TestDialerRefusesPrivateNetworks(t *testing.T) {
	t.Parallel()
	st := storetest.OpenSQLite(t)
	svc := newJobs(t, st)
	r := newReceiver(t, "", nil)
	port := r.URL[strings.LastIndex(r.URL, ":")+1:]
	var mu sync.Mutex
	var errs []string
	d := deliverer(t, st, notify.Config{MaxAttempts: 1},
		destination(t, "  - {name: by-ip, url: 'https://127.0.0.1:"+port+"', format: slack}"),
		destination(t, "  - {name: by-name, url: 'https://localhost:"+port+"', format: slack}"))
	pending(t, svc, "ssrf-1")
	if _, err := d.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := notifications(t, st, store.NotificationQuery{})[0]
	mu.Lock()
	errs = append(errs, n.LastError)
	mu.Unlock()
	if n.State != store.NotificationDead || strings.Count(n.LastError, notify.ErrRefusedAddress.Error()) != 2 ||
		!strings.Contains(n.LastError, "by-ip: dial tcp") || !strings.Contains(n.LastError, "by-name: dial tcp") {
		t.Errorf("settled as %+v", n)
	}
	if len(r.all()) != 0 {
		t.Error("the receiver on loopback got a request")
	}
	// The refusal is the dialer's: its error is ErrRefusedAddress, from a dial.
	if err := notify.ProbeDial(context.Background(), "tcp", "localhost:"+port, false); !errors.Is(err, notify.ErrRefusedAddress) {
		t.Errorf("dial without the allowance: %v", err)
	}
	if err := notify.ProbeDial(context.Background(), "tcp", "localhost:"+port, true); err != nil {
		t.Errorf("dial with the allowance: %v", err)
	}
}

func TestRefusedAddresses(t *testing.T) {
	t.Parallel()
	for addr, refused := range map[string]bool{
		"127.0.0.1": true, "127.5.5.5": true, "::1": true, "10.1.2.3": true, "172.16.0.1": true, "192.168.1.1": true,
		"169.254.169.254": true, "fe80::1": true, "fc00::1": true, "224.0.0.1": true, "ff02::1": true, "0.0.0.0": true,
		"::": true, "100.64.0.1": true, "255.255.255.255": true, "::ffff:127.0.0.1": true, "::ffff:10.0.0.1": true,
		"0.1.2.3": true, "93.184.216.34": false, "2606:4700::1111": false, "8.8.8.8": false,
	} {
		if got := notify.RefusedAddr(addr); got != refused {
			t.Errorf("%s refused = %v, want %v", addr, got, refused)
		}
	}
}

// A failing destination's URL (a credential, for Slack) and secrets reach neither the
// stored error nor the log.
func TestFailuresRevealNoCredentials(t *testing.T) {
	t.Parallel()
	st := storetest.OpenSQLite(t)
	svc := newJobs(t, st)
	r := newReceiver(t, "", nil)
	url := r.URL + "/services/T0PSECRET"
	r.Close() // nothing listens there any more: the request fails
	var logs strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	d := deliverer(t, st, notify.Config{MaxAttempts: 2, Log: log},
		destination(t, fmt.Sprintf("  - {name: ops, url: '%s', secrets: [%s], allow_private_network: true}", url, secret('z'))))
	pending(t, svc, "secret-1")
	for range 2 {
		if _, err := d.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(25 * time.Millisecond) // past the first backoff
	}
	n := notifications(t, st, store.NotificationQuery{})[0]
	mu.Lock()
	defer mu.Unlock()
	if n.State != store.NotificationDead || !strings.Contains(n.LastError, "ops: dial tcp") {
		t.Fatalf("settled as %+v", n)
	}
	for _, leak := range []string{"T0PSECRET", strings.TrimPrefix(secret('z'), "whsec_")} {
		if strings.Contains(n.LastError, leak) || strings.Contains(logs.String(), leak) {
			t.Errorf("%q leaked:\nerror %s\nlog %s", leak, n.LastError, logs.String())
		}
	}
	if !strings.Contains(logs.String(), "dead-lettered") {
		t.Errorf("no dead-letter line in the log:\n%s", logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// SetDestinations (serve calls it on SIGHUP) changes where the next notifications go,
// with the new signing secrets, and refuses a set the lease cannot cover, keeping the
// current one.
func TestSetDestinations(t *testing.T) {
	t.Parallel()
	st := storetest.OpenSQLite(t)
	svc := newJobs(t, st)
	old, rotated := newReceiver(t, secret('o'), nil), newReceiver(t, secret('n'), nil)
	d := deliverer(t, st, notify.Config{Lease: 3 * time.Second, Timeout: time.Second},
		destination(t, fmt.Sprintf("  - {name: hooks, url: %s, secrets: [%s], allow_private_network: true}", old.URL, secret('o'))))
	run(t, d)
	pending(t, svc, "pay-1")
	waitFor(t, "the first notification delivered", func() bool { return len(old.all()) == 1 })

	three := []*notify.Destination{
		destination(t, fmt.Sprintf("  - {name: a, url: %s, format: slack, allow_private_network: true}", rotated.URL)),
		destination(t, fmt.Sprintf("  - {name: b, url: %s, format: slack, allow_private_network: true}", rotated.URL)),
		destination(t, fmt.Sprintf("  - {name: c, url: %s, format: slack, allow_private_network: true}", rotated.URL)),
	}
	if err := d.SetDestinations(three); err == nil || !strings.Contains(err.Error(), "lease") {
		t.Fatalf("three destinations at 1 s each under a 3 s lease: %v, want a refusal naming the lease", err)
	}
	if err := d.SetDestinations([]*notify.Destination{destination(t, fmt.Sprintf(
		"  - {name: hooks, url: %s, secrets: [%s], allow_private_network: true}", rotated.URL, secret('n')))}); err != nil {
		t.Fatal(err)
	}
	pending(t, svc, "pay-2")
	waitFor(t, "the second notification delivered to the new destination", func() bool { return len(rotated.all()) == 1 })
	if h := rotated.all()[0]; h.verified != nil || message(t, h.body).Data.JobID != "pay-2" {
		t.Errorf("new destination: verified %v, body %s", h.verified, h.body)
	}
	if n := len(old.all()); n != 1 {
		t.Errorf("the replaced destination got %d requests, want only the first", n)
	}
}
