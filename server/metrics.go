package server

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/agate-pdp/agate/buildinfo"
	"github.com/agate-pdp/agate/jobs"
)

// Metrics are the server's Prometheus collectors, registered on a registry passed in.
// Label values come from bounded sets (method names, codes, reasons, reason codes);
// free text stays in evidence.
type Metrics struct {
	rpcs       *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	decisions  *prometheus.CounterVec
	approvals  *prometheus.CounterVec
	conflicts  *prometheus.CounterVec
	replays    *prometheus.CounterVec
	activeInfo *prometheus.GaugeVec

	mu     sync.Mutex
	active string
}

// NewMetrics creates and registers the collectors.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		rpcs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agate_rpc_requests_total", Help: "RPCs handled, by method and gRPC code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agate_rpc_duration_seconds", Help: "RPC latency, by method and gRPC code.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"method", "code"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agate_decisions_total", Help: "Decisions recorded, by outcome.",
		}, []string{"decision"}),
		approvals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agate_approvals_total", Help: "Approve and Reject calls, by outcome: approved, already_approved, rejected, already_rejected, or a refusal's reason in lower case (self_approval, role_not_allowed, job_hash_mismatch, …).",
		}, []string{"outcome"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agate_conflicts_total", Help: "Conflicts answered, by reason (snapshot_drift, job_hash_mismatch, lock_busy).",
		}, []string{"reason"}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agate_replays_total", Help: "Replays performed, by reason code.",
		}, []string{"reason_code"}),
		activeInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "agate_active_snapshot_info", Help: "1 for the policy snapshot this replica decides under.",
		}, []string{"snapshot"}),
	}
	bi := buildinfo.Read()
	build := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "agate_build_info", Help: "Always 1; the labels say which build is running.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "commit": bi.Commit, "go_version": bi.GoVersion},
	}, func() float64 { return 1 })
	for _, c := range []prometheus.Collector{m.rpcs, m.latency, m.decisions, m.approvals, m.conflicts, m.replays, m.activeInfo, build} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// SetActiveSnapshot moves the info gauge to the snapshot id.
func (m *Metrics) SetActiveSnapshot(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id == m.active {
		return
	}
	if m.active != "" {
		m.activeInfo.DeleteLabelValues(m.active)
	}
	m.activeInfo.WithLabelValues(id).Set(1)
	m.active = id
}

// countError counts conflicts (ABORTED answers) by reason.
func (s *Server) countError(err error) {
	var je *jobs.Error
	if s.metrics == nil || !errors.As(err, &je) || je.Code != jobs.CodeAborted {
		return
	}
	s.metrics.conflicts.WithLabelValues(strings.ToLower(je.Reason)).Inc()
}

// countApproval counts Approve and Reject answers; a refused call counts under its
// reason (self_approval, already_rejected, …), a bounded set.
func (s *Server) countApproval(outcome string, err error) {
	if s.metrics == nil {
		return
	}
	var je *jobs.Error
	if err != nil {
		if !errors.As(err, &je) || je.Reason == "" {
			return
		}
		outcome = strings.ToLower(je.Reason)
	}
	s.metrics.approvals.WithLabelValues(outcome).Inc()
}

// rpcSeries are one method's and code's request counter and latency histogram.
type rpcSeries struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

// methodSeries holds a method's series by code, each created on the method's first
// answer with that code, so /metrics lists only what happened. Looking a series up
// here, rather than by its label values, spares hashing them on every call.
type methodSeries [codes.Unauthenticated + 1]atomic.Pointer[rpcSeries]

// newSeriesTable returns an empty table for methods.
func newSeriesTable(methods []string) map[string]*methodSeries {
	t := make(map[string]*methodSeries, len(methods))
	for _, m := range methods {
		t[m] = new(methodSeries)
	}
	return t
}

// rpcSeries returns the series of a call to method answered with code.
func (s *Server) rpcSeries(method string, code codes.Code) *rpcSeries {
	byCode, ok := s.series[method]
	if !ok || int(code) >= len(byCode) {
		return s.metrics.newRPCSeries(method, code) // a method or code outside the table
	}
	if r := byCode[code].Load(); r != nil {
		return r
	}
	r := s.metrics.newRPCSeries(method, code)
	byCode[code].Store(r) // a racing call stores the same series: both come from the vectors
	return r
}

func (m *Metrics) newRPCSeries(method string, code codes.Code) *rpcSeries {
	return &rpcSeries{count: m.rpcs.WithLabelValues(method, code.String()),
		latency: m.latency.WithLabelValues(method, code.String())}
}
