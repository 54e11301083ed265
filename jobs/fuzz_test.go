package jobs_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/sqlite"
)

// rowCount counts every job and evidence event in st.
func rowCount(t *testing.T, st store.Store) (jobsN, events int) {
	t.Helper()
	err := st.Read(context.Background(), func(ctx context.Context, tx store.Tx) error {
		js, err := tx.ListJobs(ctx, store.JobQuery{Limit: 1 << 20})
		if err != nil {
			return err
		}
		es, err := tx.QueryEvents(ctx, store.EventQuery{Limit: 1 << 20})
		jobsN, events = len(js), len(es)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return jobsN, events
}

// FuzzRequestValidation sends every lifecycle call fuzzed ids, hashes, reasons and job
// fields (invalid UTF-8, control characters, malformed hashes) by a caller with standing
// on a real job. Whatever the input, the answer is an *Error the server can map (never
// an internal error), and a request refused as INVALID_ARGUMENT wrote nothing.
func FuzzRequestValidation(f *testing.F) {
	for _, seed := range [][4]string{
		{"job-1", "abc", "ok", "agent-7"},
		{"job-1", "sha256:" + strings.Repeat("0", 64), "", " agent-7"},
		{"job\xff", "sha256:" + strings.Repeat("A", 64), "\xff\xfe", "agent-7 "},
		{"", "sha256:", strings.Repeat("r", 513), "a\x00b"},
		{"job-1", "sha256:" + strings.Repeat("g", 64), "why", "Alice@Example.com"},
		{"job:1.2_3-x", "SHA256:" + strings.Repeat("f", 64), "\u200b", "\u200bagent"},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3])
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(f.TempDir(), "agate.db"), sqlite.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = st.Close() })
	cache, err := snapshots.NewCache(2)
	if err != nil {
		f.Fatal(err)
	}
	svc, err := jobs.New(jobs.Config{Store: st, Tracker: snapshots.NewTracker(st, cache, nil), Cache: cache})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(svc.Close)
	if _, err := svc.PutPolicy(ctx, admin, []byte(testPolicy), true); err != nil {
		f.Fatal(err)
	}
	e := &env{st: st, svc: svc}
	f.Fuzz(func(t *testing.T, id, hash, reason, actor string) {
		approver := jobs.Principal{ID: "fuzz-approver@example.com", Roles: []string{"finance-approver"}}
		calls := map[string]func() error{
			"Approve": func() error {
				_, err := e.svc.Approve(ctx, approver, jobs.ApproveRequest{JobID: id, JobHash: hash, Reason: reason})
				return err
			},
			"Reject": func() error {
				_, err := e.svc.Reject(ctx, approver, jobs.RejectRequest{JobID: id, JobHash: hash, Reason: reason})
				return err
			},
			"Publish": func() error {
				_, err := e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: id, JobHash: hash})
				return err
			},
			"Replay": func() error {
				_, err := e.svc.Replay(ctx, dispatcher, jobs.ReplayRequest{JobID: id, JobHash: hash, ExpectedAttempt: 1,
					ReasonCode: jobs.ReplayWorkerOutage, Reason: reason})
				return err
			},
			"ReportOutcome": func() error {
				_, err := e.svc.ReportOutcome(ctx, dispatcher, jobs.OutcomeRequest{JobID: id, Attempt: 1, Detail: reason})
				return err
			},
			"Cancel": func() error {
				_, err := e.svc.Cancel(ctx, decider, jobs.CancelRequest{JobID: id, Reason: reason})
				return err
			},
			"GetJob": func() error {
				_, err := e.svc.GetJob(ctx, auditor, id)
				return err
			},
			"Decide": func() error {
				r := payment.request(id)
				r.Actor, r.TraceID = actor, reason
				_, err := e.svc.Decide(ctx, decider, r)
				return err
			},
		}
		for name, call := range calls {
			jobsBefore, eventsBefore := rowCount(t, st)
			err := call()
			if err == nil {
				continue
			}
			je, ok := jobs.AsError(err)
			if !ok {
				t.Fatalf("%s(%q, %q, %q, %q): internal error %v", name, id, hash, reason, actor, err)
			}
			if je.Code == jobs.CodeInvalidArgument {
				if je.Field == "" {
					t.Fatalf("%s: INVALID_ARGUMENT names no field: %q", name, je.Msg)
				}
				if j, ev := rowCount(t, st); j != jobsBefore || ev != eventsBefore {
					t.Fatalf("%s(%q, %q, %q, %q) refused on %s but wrote %d jobs and %d events", name, id, hash, reason, actor,
						je.Field, j-jobsBefore, ev-eventsBefore)
				}
			}
		}
	})
}
