package audit

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	mrand "math/rand/v2"
	"slices"

	"github.com/agate-pdp/agate/store"
)

const (
	defaultSample = 30
	maxSample     = 1000
)

// finished are the statuses of jobs a sample audit draws from: decided for good, or
// handed to a worker.
var finished = []store.Status{store.StatusDenied, store.StatusRejected, store.StatusExpired,
	store.StatusCancelled, store.StatusAllowedAndPublished, store.StatusApprovedAndPublished,
	store.StatusSucceeded, store.StatusFailed}

// SampleRequest asks for a sample audit of the finished jobs decided in the window.
type SampleRequest struct {
	Window
	N    int    // sample size; 0 means 30; all jobs when fewer are finished
	Seed *int64 // nil: one is drawn and reported
}

// Check is one check applied to a sampled job.
type Check struct {
	Name   string
	Passed bool // true also when the check does not apply to the job
	Detail string
}

// Verdict is the result for one sampled job.
type Verdict struct {
	JobID  string
	Passed bool
	Checks []Check // in the order of CheckNames
}

// SampleResult is a sample audit's verdicts, ordered by job id, and its totals.
type SampleResult struct {
	Verdicts   []Verdict
	Population int64 // finished jobs decided in the window
	Passed     int
	Failed     int
	Seed       int64
}

// SampleAudit draws N finished jobs decided in the window, reproducibly for a seed and
// the same population, and re-verifies each from the store (see CheckNames).
func (s *Service) SampleAudit(ctx context.Context, r SampleRequest) (SampleResult, error) {
	if err := r.check(); err != nil {
		return SampleResult{}, err
	}
	n := r.N
	if n == 0 {
		n = defaultSample
	}
	seed := int64(0)
	if r.Seed != nil {
		seed = *r.Seed
	} else {
		var b [8]byte
		_, _ = rand.Read(b[:])
		seed = int64(binary.LittleEndian.Uint64(b[:]) >> 1) // non-negative: easy to type back
	}
	var out SampleResult
	err := s.read(ctx, func(ctx context.Context, tx store.Tx) error {
		out = SampleResult{Seed: seed}
		ids, err := population(ctx, tx, r.Window)
		if err != nil {
			return err
		}
		out.Population = int64(len(ids))
		for _, id := range sample(ids, n, seed) {
			v, err := s.auditJob(ctx, tx, id)
			if err != nil {
				return err
			}
			if v.Passed {
				out.Passed++
			} else {
				out.Failed++
			}
			out.Verdicts = append(out.Verdicts, v)
		}
		return nil
	})
	return out, err
}

func (r SampleRequest) check() error {
	if err := r.Window.check(); err != nil {
		return err
	}
	if r.N < 0 || r.N > maxSample {
		return invalid("n", "must be between 0 and %d", maxSample)
	}
	return nil
}

// population returns the ids of the finished jobs decided in w, sorted, so the sample
// does not depend on the database's collation.
func population(ctx context.Context, tx store.Tx, w Window) ([]string, error) {
	q := store.JobQuery{Statuses: finished, DecidedSince: w.Since, DecidedBefore: w.Until, Limit: pageLimit}
	var ids []string
	for {
		page, err := tx.ListJobs(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, j := range page {
			ids = append(ids, j.ID)
		}
		if len(page) < q.Limit {
			break
		}
		last := page[len(page)-1]
		q.AfterDecidedAt, q.AfterID = last.DecidedAt, last.ID
	}
	slices.Sort(ids)
	return ids, nil
}

// sample picks n of ids (all when there are fewer) with a partial Fisher–Yates shuffle
// seeded by seed, and returns them sorted.
func sample(ids []string, n int, seed int64) []string {
	ids = slices.Clone(ids)
	if n > len(ids) {
		n = len(ids)
	}
	rng := mrand.New(mrand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
	for i := range n {
		j := i + rng.IntN(len(ids)-i)
		ids[i], ids[j] = ids[j], ids[i]
	}
	out := ids[:n]
	slices.Sort(out)
	return out
}
