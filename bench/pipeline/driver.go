package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/agate-pdp/agate/bench/internal/stats"
	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
)

// config is one run of the pipeline.
type config struct {
	Addr         string
	Clients      int
	Duration     time.Duration
	MaxJobs      int64
	MaxErrors    int64
	CallTimeout  time.Duration
	Prefix       string
	IDs          string // "random" or "sequential"
	DecideToken  string
	ApproveToken string
	PublishToken string
}

// result is what a run prints. Jobs times each job from the start of its
// Decide to the end of its Publish; the others time single calls.
type result struct {
	Clients      int              `json:"clients"`
	Jobs         stats.Summary    `json:"jobs"`
	Decide       stats.Summary    `json:"decide"`
	Approve      stats.Summary    `json:"approve"`
	Publish      stats.Summary    `json:"publish"`
	ErrorsByKind map[string]int64 `json:"errors_by_kind,omitempty"`
}

// worker is one client's share of a run; only its goroutine touches it.
type worker struct {
	client                     agatev1.DecisionServiceClient
	jobs, dec, appr, pub       []time.Duration
	errs                       map[string]int64 // by step and problem
	stepErrs                   map[string]int64 // by step
	decideMD, approveMD, pubMD metadata.MD
}

// drive runs one worker per client, starting jobs until the duration, MaxJobs
// or MaxErrors is reached; jobs under way then finish, so no call is cut short
// by the end of the run and every failure counts. Ending ctx aborts the run.
func drive(ctx context.Context, cfg config, clients []agatev1.DecisionServiceClient) result {
	calls, abort := context.WithCancel(ctx)
	defer abort()
	starting, stop := context.WithTimeout(calls, cfg.Duration)
	defer stop()
	return driveUntil(calls, abort, starting, cfg, clients)
}

// driveUntil starts jobs until starting ends and makes calls under calls;
// abort ends calls once MaxErrors jobs have failed.
func driveUntil(calls context.Context, abort context.CancelFunc, starting context.Context, cfg config,
	clients []agatev1.DecisionServiceClient) result {
	var started, failed atomic.Int64
	workers := make([]*worker, len(clients))
	var wg sync.WaitGroup
	begin := time.Now()
	for i, c := range clients {
		w := &worker{client: c, errs: map[string]int64{}, stepErrs: map[string]int64{},
			decideMD:  metadata.Pairs("authorization", "Bearer "+cfg.DecideToken),
			approveMD: metadata.Pairs("authorization", "Bearer "+cfg.ApproveToken),
			pubMD:     metadata.Pairs("authorization", "Bearer "+cfg.PublishToken)}
		workers[i] = w
		wg.Go(func() {
			for starting.Err() == nil {
				n := started.Add(1)
				if n > cfg.MaxJobs {
					return
				}
				if !w.one(calls, cfg, jobID(cfg, n)) && failed.Add(1) >= cfg.MaxErrors {
					abort()
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(begin)

	res := result{Clients: len(clients), ErrorsByKind: map[string]int64{}}
	var jobs, dec, appr, pub []time.Duration
	stepErrs := map[string]int64{}
	for _, w := range workers {
		jobs, dec = append(jobs, w.jobs...), append(dec, w.dec...)
		appr, pub = append(appr, w.appr...), append(pub, w.pub...)
		for k, v := range w.errs {
			res.ErrorsByKind[k] += v
		}
		for k, v := range w.stepErrs {
			stepErrs[k] += v
		}
	}
	res.Jobs = stats.Summarize(jobs, failed.Load(), elapsed)
	res.Decide = stats.Summarize(dec, stepErrs["Decide"], elapsed)
	res.Approve = stats.Summarize(appr, stepErrs["Approve"], elapsed)
	res.Publish = stats.Summarize(pub, stepErrs["Publish"], elapsed)
	return res
}

// jobID names the n-th job of a run. Sequential ids sort next to each other, as
// time-ordered ids (ULIDs, counters) do; random ones spread over the key space.
func jobID(cfg config, n int64) string {
	if cfg.IDs == "sequential" {
		return fmt.Sprintf("%s-%012d", cfg.Prefix, n)
	}
	return cfg.Prefix + "-" + rand.Text()
}

// one takes one job through Decide, Approve and Publish and reports whether
// every step answered as expected. A call cut short because the run was
// aborted is not counted as a failure.
func (w *worker) one(ctx context.Context, cfg config, jobID string) bool {
	start := time.Now()
	payload := fmt.Appendf(nil, `{"amount":1250.5,"currency":"EUR","invoice":%q}`, jobID)
	var hash string
	steps := []struct {
		name string
		md   metadata.MD
		lat  *[]time.Duration
		call func(context.Context) string // "" when the answer is as expected
	}{
		{"Decide", w.decideMD, &w.dec, func(ctx context.Context) string {
			r, err := w.client.Decide(ctx, &agatev1.DecideRequest{Job: &agatev1.Job{JobId: jobID,
				Topic: "finance.payment.execute", Actor: "agent-7", Payload: payload,
				Labels: map[string]*structpb.Value{"env": structpb.NewStringValue("production")}}})
			if err != nil {
				return status.Code(err).String()
			}
			hash = r.GetJobHash()
			return expect(r.GetStatus() == agatev1.JobStatus_JOB_STATUS_PENDING_APPROVAL, r.GetStatus())
		}},
		{"Approve", w.approveMD, &w.appr, func(ctx context.Context) string {
			r, err := w.client.Approve(ctx, &agatev1.ApproveRequest{JobId: jobID, JobHash: hash, Reason: "load test"})
			if err != nil {
				return status.Code(err).String()
			}
			return expect(r.GetStatus() == agatev1.JobStatus_JOB_STATUS_APPROVED && !r.GetAlreadyApproved(), r.GetStatus())
		}},
		{"Publish", w.pubMD, &w.pub, func(ctx context.Context) string {
			r, err := w.client.Publish(ctx, &agatev1.PublishRequest{JobId: jobID, JobHash: hash})
			if err != nil {
				return status.Code(err).String()
			}
			st := r.GetJob().GetStatus()
			return expect(st == agatev1.JobStatus_JOB_STATUS_APPROVED_AND_PUBLISHED && !r.GetAlreadyPublished(), st)
		}},
	}
	for _, s := range steps {
		callCtx, cancel := context.WithTimeout(metadata.NewOutgoingContext(ctx, s.md), cfg.CallTimeout)
		t := time.Now()
		problem := s.call(callCtx)
		cancel()
		if problem != "" {
			if ctx.Err() != nil {
				return true
			}
			w.stepErrs[s.name]++
			w.errs[s.name+": "+problem]++
			return false
		}
		*s.lat = append(*s.lat, time.Since(t))
	}
	w.jobs = append(w.jobs, time.Since(start))
	return true
}

func expect(ok bool, got agatev1.JobStatus) string {
	if ok {
		return ""
	}
	return "unexpected status " + got.String()
}
