package notify

import (
	"bytes"
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// Config configures a Deliverer. Store is required; zero durations take the defaults.
type Config struct {
	Store        store.Store
	Destinations []*Destination // none: this replica delivers nothing, and only prunes
	// AllowPrivateNetworks lets every destination reach loopback and private addresses.
	AllowPrivateNetworks bool
	MaxAttempts          int           // failed attempts before dead-letter (default 10)
	Backoff              time.Duration // wait after the first failure, doubled after each (default 5s)
	MaxBackoff           time.Duration // the longest wait (default 1h)
	Timeout              time.Duration // one HTTP request, connection included (default 10s)
	Lease                time.Duration // how long a claim holds (default 2m); longer than a row's deliveries take
	Poll                 time.Duration // how often the outbox is checked (default 1s)
	Retention            time.Duration // how long finished rows are kept (default 7 days)
	Batch                int           // rows claimed at once, delivered in parallel (default 16)
	Owner                string        // this deliverer's claim name (default: random)
	Clock                func() time.Time
	Log                  *slog.Logger
	Registerer           prometheus.Registerer // nil: metrics are not registered
}

func (c *Config) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&c.Backoff, 5*time.Second)
	set(&c.MaxBackoff, time.Hour)
	set(&c.Timeout, 10*time.Second)
	set(&c.Lease, 2*time.Minute)
	set(&c.Poll, time.Second)
	set(&c.Retention, 7*24*time.Hour)
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 10
	}
	if c.Batch <= 0 {
		c.Batch = 16
	}
	if c.Owner == "" {
		b := make([]byte, 8)
		_, _ = crand.Read(b)
		c.Owner = "deliverer-" + hex.EncodeToString(b)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Deliverer delivers the outbox. Every replica runs one; leases keep two from sending a
// notification at once, so under normal operation each is sent once per destination,
// and after a crash at least once.
type Deliverer struct {
	cfg     Config
	dests   atomic.Pointer[destSet] // swapped whole by SetDestinations; a round uses one
	metrics metrics
}

type metrics struct {
	deadLetter, pending prometheus.Gauge
	deliveries          *prometheus.CounterVec
}

// New checks cfg and returns a Deliverer.
func New(cfg Config) (*Deliverer, error) {
	if cfg.Store == nil {
		return nil, errors.New("notify: Config.Store is required")
	}
	cfg.defaults()
	d := &Deliverer{cfg: cfg}
	if err := d.SetDestinations(cfg.Destinations); err != nil {
		return nil, err
	}
	d.metrics = metrics{
		deadLetter: prometheus.NewGauge(prometheus.GaugeOpts{Name: "agate_notifications_dead_letter",
			Help: "Notifications in the dead-letter state, not yet pruned (from the database: every replica's)."}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "agate_notifications_pending",
			Help: "Notifications waiting for delivery (from the database: every replica's)."}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agate_notifications_deliveries_total",
			Help: "Webhook requests this replica made, by destination and result (delivered, failed)."}, []string{"destination", "result"}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{d.metrics.deadLetter, d.metrics.pending, d.metrics.deliveries} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return d, nil
}

// destSet is the destinations a deliverer sends to, each with its HTTP client.
type destSet struct {
	list    []*Destination
	clients map[string]*http.Client // by destination name
}

// SetDestinations replaces the destinations, from the next delivery round on (a round
// under way finishes with the set it started with). A notification already delivered
// to a destination of that name is not sent to it again; one pending is sent to the new
// set. It refuses a set the lease could not cover, keeping the current one.
func (d *Deliverer) SetDestinations(dests []*Destination) error {
	if d.cfg.Lease <= d.cfg.Timeout*time.Duration(max(1, len(dests))) {
		return fmt.Errorf("notify: the lease (%s) must outlast a request (%s) to each of the %d destinations", d.cfg.Lease, d.cfg.Timeout, len(dests))
	}
	set := &destSet{list: dests, clients: make(map[string]*http.Client, len(dests))}
	for _, dest := range dests {
		set.clients[dest.Name] = newClient(dest.AllowPrivateNetwork || d.cfg.AllowPrivateNetworks, d.cfg.Timeout)
	}
	if old := d.dests.Swap(set); old != nil {
		for _, c := range old.clients {
			c.CloseIdleConnections()
		}
	}
	return nil
}

// newClient is an HTTP client that dials through the guard, uses no proxy (a proxy
// would dial on the client's behalf, past the guard) and follows no redirect.
func newClient(allowPrivate bool, timeout time.Duration) *http.Client {
	tr := &http.Transport{
		DialContext:           newDialer(allowPrivate, timeout).DialContext,
		Proxy:                 nil,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
	}
	return &http.Client{Transport: tr, Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// housekeeping is how often Run prunes and refreshes the gauges.
const housekeeping = 30 * time.Second

// Run delivers until ctx ends: it polls the outbox every Poll, and prunes and counts it
// every 30 s. Deliveries in flight when ctx ends are abandoned; their leases lapse and
// another deliverer (or this one, restarted) sends them again.
func (d *Deliverer) Run(ctx context.Context) {
	poll := time.NewTicker(d.cfg.Poll)
	defer poll.Stop()
	var lastHouse time.Time
	for {
		if time.Since(lastHouse) >= housekeeping {
			lastHouse = time.Now()
			d.housekeep(ctx)
		}
		for len(d.dests.Load().list) > 0 && ctx.Err() == nil {
			n, err := d.RunOnce(ctx)
			if err != nil && ctx.Err() == nil {
				d.cfg.Log.Warn("notifications: claiming", "err", err)
			}
			if err != nil || n < d.cfg.Batch {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
		}
	}
}

func (d *Deliverer) housekeep(ctx context.Context) {
	before := d.cfg.Clock().Add(-d.cfg.Retention).UnixMicro()
	for ctx.Err() == nil {
		var n int
		err := d.cfg.Store.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) (err error) {
			n, err = tx.PruneNotifications(ctx, before, 500)
			return err
		})
		if err != nil {
			d.cfg.Log.Warn("notifications: pruning", "err", err)
			break
		}
		if n < 500 {
			break
		}
	}
	if err := d.RefreshGauges(ctx); err != nil && ctx.Err() == nil {
		d.cfg.Log.Warn("notifications: counting", "err", err)
	}
}

// RefreshGauges reads the outbox's counts into the gauges.
func (d *Deliverer) RefreshGauges(ctx context.Context) error {
	var counts map[store.NotificationState]int
	err := d.cfg.Store.Read(ctx, func(ctx context.Context, tx store.Tx) (err error) {
		counts, err = tx.CountNotifications(ctx)
		return err
	})
	if err != nil {
		return err
	}
	d.metrics.deadLetter.Set(float64(counts[store.NotificationDead]))
	d.metrics.pending.Set(float64(counts[store.NotificationPending]))
	return nil
}

// RunOnce claims up to Batch due notifications, delivers them in parallel and settles
// each, and returns how many it claimed.
func (d *Deliverer) RunOnce(ctx context.Context) (int, error) {
	set := d.dests.Load()
	now := d.cfg.Clock()
	var claimed []store.Notification
	err := d.cfg.Store.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) (err error) {
		claimed, err = tx.ClaimNotifications(ctx, d.cfg.Owner, now.UnixMicro(), now.Add(d.cfg.Lease).UnixMicro(), d.cfg.Batch)
		return err
	})
	if err != nil {
		return 0, err
	}
	// One job's notifications go out in the order of its transitions; jobs in parallel.
	var byJob [][]store.Notification
	at := map[string]int{}
	for _, n := range claimed {
		i, ok := at[n.JobID]
		if !ok {
			i = len(byJob)
			at[n.JobID] = i
			byJob = append(byJob, nil)
		}
		byJob[i] = append(byJob[i], n)
	}
	perRow := d.cfg.Timeout * time.Duration(max(1, len(set.list)))
	var wg sync.WaitGroup
	for _, ns := range byJob {
		wg.Go(func() {
			slices.SortStableFunc(ns, func(a, b store.Notification) int { return cmp.Compare(a.CreatedAt, b.CreatedAt) })
			for _, n := range ns {
				if d.cfg.Clock().Add(perRow).UnixMicro() > n.ClaimUntil {
					// Its lease could lapse mid-send and another deliverer take it: leave it to
					// lapse instead, so no two send it at once.
					return
				}
				d.deliver(ctx, set, n)
			}
		})
	}
	wg.Wait()
	return len(claimed), nil
}

// deliver sends n to every destination that wants it and has not had it, then settles it.
func (d *Deliverer) deliver(ctx context.Context, set *destSet, n store.Notification) {
	e, j, err := d.load(ctx, &n)
	var failures []string
	if err != nil {
		failures = append(failures, "reading the transition: "+err.Error())
	} else {
		for _, dest := range set.list {
			if slices.Contains(n.DeliveredTo, dest.Name) || !dest.Matches(n.Kind, j.Topic) {
				continue
			}
			if err := d.send(ctx, set.clients[dest.Name], dest, &n, &e, &j); err != nil {
				if ctx.Err() != nil {
					return // shutting down: the lease lapses and the row is sent again
				}
				d.metrics.deliveries.WithLabelValues(dest.Name, "failed").Inc()
				failures = append(failures, dest.Name+": "+err.Error())
				continue
			}
			d.metrics.deliveries.WithLabelValues(dest.Name, "delivered").Inc()
			n.DeliveredTo = append(n.DeliveredTo, dest.Name)
		}
	}
	now := d.cfg.Clock()
	switch {
	case len(failures) == 0:
		n.State, n.DoneAt, n.LastError = store.NotificationDelivered, now.UnixMicro(), ""
	default:
		n.Attempts++
		n.LastError = truncate(fmt.Sprint(failures), 1024)
		if n.Attempts >= d.cfg.MaxAttempts {
			n.State, n.DoneAt = store.NotificationDead, now.UnixMicro()
			d.cfg.Log.Error("notification dead-lettered", "id", n.ID, "job_id", n.JobID, "kind", n.Kind,
				"attempts", n.Attempts, "err", n.LastError)
		} else {
			n.NextAt = now.Add(d.backoff(n.Attempts)).UnixMicro()
			d.cfg.Log.Warn("notification failed; retrying", "id", n.ID, "job_id", n.JobID, "attempts", n.Attempts,
				"next", time.UnixMicro(n.NextAt).UTC(), "err", n.LastError)
		}
	}
	// What a receiver answered is recorded even when shutdown has begun: a delivery left
	// unsettled is sent again by the next lease holder, a needless duplicate.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err = d.cfg.Store.ReadWrite(sctx, func(ctx context.Context, tx store.Tx) error {
		return tx.SettleNotification(ctx, d.cfg.Owner, n)
	})
	if err != nil {
		d.cfg.Log.Warn("notifications: settling", "id", n.ID, "err", err)
	}
}

// backoff is the wait after the n-th failure: Backoff·2ⁿ⁻¹ up to MaxBackoff, of which a
// random half is taken off, so receivers that failed together are not retried together.
func (d *Deliverer) backoff(n int) time.Duration {
	w := d.cfg.MaxBackoff
	if n-1 < 32 && d.cfg.Backoff<<(n-1) > 0 && d.cfg.Backoff<<(n-1) < w {
		w = d.cfg.Backoff << (n - 1)
	}
	return w/2 + rand.N(w/2+1)
}

// load reads n's evidence event and its job, which never change once written.
func (d *Deliverer) load(ctx context.Context, n *store.Notification) (e evidence.Event, j store.Job, err error) {
	err = d.cfg.Store.Read(ctx, func(ctx context.Context, tx store.Tx) error {
		if j, err = tx.GetJob(ctx, n.JobID, false); err != nil {
			return err
		}
		evs, err := tx.ListEvents(ctx, n.JobID)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if ev.EventID == n.EventID {
				e = ev
				return nil
			}
		}
		return fmt.Errorf("event %s: %w", n.EventID, store.ErrNotFound)
	})
	return e, j, err
}

// send makes one signed request. Its error names no URL: the URL may be a credential.
func (d *Deliverer) send(ctx context.Context, client *http.Client, dest *Destination, n *store.Notification, e *evidence.Event, j *store.Job) error {
	b, err := body(dest.Format, n, e, j, dest.Trusted)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, dest.URL.String(), bytes.NewReader(b))
	if err != nil {
		return errors.New("building the request failed")
	}
	ts := d.cfg.Clock().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "agate-webhooks")
	req.Header.Set(HeaderID, n.ID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	if len(dest.keys) > 0 {
		req.Header.Set(HeaderSignature, Sign(dest.keys, n.ID, ts, b))
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") // a cut rune would be refused by a TEXT column
}
