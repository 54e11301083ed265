package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agate-pdp/agate/canonical"
	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/postgres"
	"github.com/agate-pdp/agate/store/postgres/pgtest"
	"github.com/agate-pdp/agate/store/sqlite"
)

// crashKind is a kind of job the example policy decides one way.
type crashKind struct {
	topic    string
	labels   map[string]any
	decision agatev1.Decision
	status   agatev1.JobStatus
}

var crashKinds = []crashKind{
	{"finance.payment.execute", map[string]any{"env": "production"},
		agatev1.Decision_DECISION_REQUIRE_HUMAN, agatev1.JobStatus_JOB_STATUS_PENDING_APPROVAL},
	{"customer.data.export", map[string]any{"env": "production"},
		agatev1.Decision_DECISION_DENY, agatev1.JobStatus_JOB_STATUS_DENIED},
	{"crm.note.create", map[string]any{"env": "dev"},
		agatev1.Decision_DECISION_ALLOW, agatev1.JobStatus_JOB_STATUS_ALLOWED},
}

// sentJob is a Decide a client sent: what it sent, and what it was told if anything.
type sentJob struct {
	kind  crashKind
	job   *agatev1.Job
	hash  string // the job hash of what was sent
	acked *agatev1.DecideResponse
}

// TestCrashMidBatch kills the server with SIGKILL while 32 clients decide jobs with
// group commit on, then restarts it on the same database. Every acknowledged decision
// is there, as acknowledged; every stored job was sent, with the content sent and one
// decision event; and a retry of each unacknowledged job answers from the database: the
// stored decision when its batch had committed, a fresh one when it had not.
func TestCrashMidBatch(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		db   func(t *testing.T) string
		open func(ctx context.Context, db string) (store.Store, error)
	}{
		{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "agate.db") }, openSQLite},
		{"postgres", func(t *testing.T) string { return pgtest.EmptyURL(t) }, openPostgres},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			db := c.db(t)
			flags := []string{"--decide-batch-window", "1ms", "--decide-batch-max", "64"}
			sent := crashLoad(t, startAgate(t, db, flags...))

			st, err := c.open(ctxT(t), db)
			if err != nil {
				t.Fatal(err)
			}
			stored := checkStored(t, st, sent)
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}

			a := startAgate(t, db, flags...)
			checkAfterRestart(t, a, sent, stored)
		})
	}
}

func openSQLite(ctx context.Context, db string) (store.Store, error) {
	return sqlite.Open(ctx, db, sqlite.Options{})
}

func openPostgres(ctx context.Context, db string) (store.Store, error) {
	return postgres.Open(ctx, db, postgres.Options{})
}

// crashLoad runs 32 clients against a until enough decisions are acknowledged, kills a
// while the clients are still sending, and returns every job sent.
func crashLoad(t *testing.T, a *agate) map[string]*sentJob {
	t.Helper()
	const clients, enough = 32, 600
	ctx := ctxT(t)
	var (
		mu    sync.Mutex
		sent  = map[string]*sentJob{}
		acked int
		stop  = make(chan struct{})
		full  = make(chan struct{})
		once  sync.Once
		wg    sync.WaitGroup
	)
	for c := range clients {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				k := crashKinds[(c+n)%len(crashKinds)]
				id := fmt.Sprintf("crash-%02d-%05d", c, n)
				payload := fmt.Appendf(nil, `{"client":%d,"n":%d}`, c, n)
				hash, err := canonical.JobHash(k.topic, "agent-crash", k.labels, payload)
				if err != nil {
					t.Error(err)
					return
				}
				s := &sentJob{kind: k, hash: hash, job: &agatev1.Job{JobId: id, Topic: k.topic, Actor: "agent-crash",
					Labels: labels(t, k.labels), Payload: payload, TraceId: "trc-" + id}}
				mu.Lock()
				sent[id] = s
				mu.Unlock()
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				d, err := a.decision().Decide(as(cctx, tokDecide), &agatev1.DecideRequest{Job: s.job})
				cancel()
				if err != nil {
					select {
					case <-stop: // the server is gone: this reply was lost
					default:
						t.Errorf("Decide %s before the crash: %v", id, err)
					}
					return
				}
				mu.Lock()
				s.acked = d
				if acked++; acked == enough {
					once.Do(func() { close(full) })
				}
				mu.Unlock()
			}
		})
	}
	select {
	case <-full:
	case <-time.After(15 * time.Second):
		t.Error("load did not reach its count in 15s")
	}
	// Stop first, then kill: every client is inside a call or about to make one, so the
	// kill lands on batches being formed, written and committed.
	close(stop)
	a.kill()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if acked == len(sent) {
		t.Error("no Decide was in flight when the server was killed")
	}
	t.Logf("%d Decides sent, %d acknowledged before the kill", len(sent), acked)
	return sent
}

// checkStored reads every job and its evidence straight from the database and returns
// the stored jobs by id.
func checkStored(t *testing.T, st store.Store, sent map[string]*sentJob) map[string]store.Job {
	t.Helper()
	stored := map[string]store.Job{}
	err := st.Read(context.Background(), func(ctx context.Context, tx store.Tx) error {
		js, err := tx.ListJobs(ctx, store.JobQuery{})
		if err != nil {
			return err
		}
		for _, j := range js {
			stored[j.ID] = j
			evs, err := tx.ListEvents(ctx, j.ID)
			if err != nil {
				return err
			}
			if len(evs) != 1 || evs[0].Kind != "decision" || evs[0].JobHash != j.Hash {
				t.Errorf("%s: %d events, want its one decision: %+v", j.ID, len(evs), evs)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	committedUnacked := 0
	for id, j := range stored {
		s, ok := sent[id]
		switch {
		case !ok:
			t.Errorf("job %s is stored but was never sent", id)
			continue
		case j.Hash != s.hash || string(j.Payload) != string(s.job.Payload) || j.TraceID != s.job.TraceId:
			t.Errorf("%s stored as %+v, not as sent", id, j)
		case s.acked == nil:
			committedUnacked++
		}
	}
	for id, s := range sent {
		if s.acked == nil {
			continue
		}
		j, ok := stored[id]
		if !ok {
			t.Errorf("acknowledged %s is not in the database", id)
			continue
		}
		if j.Hash != s.acked.JobHash || j.Decision != decisionName(s.acked.Decision) || j.DecidedAt != s.acked.DecidedAt {
			t.Errorf("%s stored as %s %s at %d, acknowledged as %s %s at %d", id, j.Decision, j.Hash, j.DecidedAt,
				s.acked.Decision, s.acked.JobHash, s.acked.DecidedAt)
		}
	}
	t.Logf("%d jobs stored, %d of them committed but not acknowledged", len(stored), committedUnacked)
	return stored
}

func decisionName(d agatev1.Decision) string {
	switch d {
	case agatev1.Decision_DECISION_ALLOW:
		return "allow"
	case agatev1.Decision_DECISION_DENY:
		return "deny"
	case agatev1.Decision_DECISION_REQUIRE_HUMAN:
		return "require_human"
	}
	return d.String()
}

// checkAfterRestart asks the restarted server for every acknowledged job, and retries
// every unacknowledged one, as its client would.
func checkAfterRestart(t *testing.T, a *agate, sent map[string]*sentJob, stored map[string]store.Job) {
	t.Helper()
	ctx := ctxT(t)
	for id, s := range sent {
		if s.acked != nil {
			got, err := a.decision().GetJob(as(ctx, tokAudit), &agatev1.GetJobRequest{JobId: id})
			if err != nil || got.Job.JobHash != s.acked.JobHash || got.Job.Decision != s.acked.Decision ||
				got.Job.Status != s.acked.Status {
				t.Errorf("acknowledged %s after the restart: %v, %v", id, got, err)
			}
			continue
		}
		d, err := a.decision().Decide(as(ctx, tokDecide), &agatev1.DecideRequest{Job: s.job})
		if err != nil {
			t.Errorf("retry of %s: %v", id, status.Convert(err).Message())
			continue
		}
		_, committed := stored[id]
		if d.AlreadyDecided != committed || d.JobHash != s.hash || d.Decision != s.kind.decision || d.Status != s.kind.status {
			t.Errorf("retry of %s (committed before the crash: %v): %v", id, committed, d)
		}
	}
	// A job nobody sent is unknown.
	_, err := a.decision().GetJob(as(ctx, tokAudit), &agatev1.GetJobRequest{JobId: "crash-never-sent"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("GetJob of a job never sent: %v", err)
	}
}
