package e2e

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/store/postgres/pgtest"
)

func TestReferenceScenarioPostgres(t *testing.T) {
	t.Parallel()
	// An empty database: the binary applies its own migrations at start.
	a := startAgate(t, pgtest.EmptyURL(t))
	runReferenceScenario(t, a)
}

// startReplicas starts n replicas on one database at once, so they race to migrate it.
func startReplicas(t *testing.T, db string, n int) []*agate {
	t.Helper()
	rs := make([]*agate, n)
	for i := range rs {
		rs[i] = launchAgate(t, db)
	}
	for _, r := range rs {
		r.waitServing(t)
	}
	return rs
}

func isLockBusy(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Aborted {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Reason == "LOCK_BUSY" {
			return true
		}
	}
	return false
}

// retryBusy calls fn until it does not answer LOCK_BUSY, as a real client would, with
// a bounded number of attempts.
func retryBusy(fn func() error) (err error, retries int) {
	for attempt := 0; attempt < 50; attempt++ {
		if err = fn(); !isLockBusy(err) {
			return err, attempt
		}
		time.Sleep(time.Duration(attempt+1) * 2 * time.Millisecond)
	}
	return err, 50
}

// TestReplicasExactlyOnce spreads 50 concurrent Approves and 20 concurrent Publishes of
// the same jobs over three replicas on one PostgreSQL: each job transitions once and is
// published once.
func TestReplicasExactlyOnce(t *testing.T) {
	t.Parallel()
	rs := startReplicas(t, pgtest.EmptyURL(t), 3)
	ctx := ctxT(t)
	const jobs, approvers, publishers = 3, 50, 20
	for n := range jobs {
		id := fmt.Sprintf("replica-pay-%d", n)
		d, err := rs[n%3].decision().Decide(as(ctx, tokDecide), &agatev1.DecideRequest{Job: payment(t, id, "agent-7", 100)})
		if err != nil {
			t.Fatal(err)
		}

		var approved, already, busyLeft atomic.Int32
		var wg sync.WaitGroup
		for i := range approvers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var resp *agatev1.ApproveResponse
				err, _ := retryBusy(func() (err error) {
					resp, err = rs[i%3].decision().Approve(as(ctx, tokAlice), &agatev1.ApproveRequest{JobId: id, JobHash: d.JobHash})
					return err
				})
				switch {
				case isLockBusy(err):
					busyLeft.Add(1)
				case err != nil:
					t.Errorf("approve: %v", err)
				case resp.AlreadyApproved:
					already.Add(1)
				default:
					approved.Add(1)
				}
			}()
		}
		wg.Wait()
		if approved.Load() != 1 || already.Load() != approvers-1 || busyLeft.Load() != 0 {
			t.Fatalf("%s: approved %d, already_approved %d, still busy %d; want 1, %d, 0",
				id, approved.Load(), already.Load(), busyLeft.Load(), approvers-1)
		}

		var published, alreadyPub atomic.Int32
		for i := range publishers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var resp *agatev1.PublishResponse
				err, _ := retryBusy(func() (err error) {
					resp, err = rs[i%3].decision().Publish(as(ctx, tokDispatch), &agatev1.PublishRequest{JobId: id, JobHash: d.JobHash})
					return err
				})
				switch {
				case err != nil:
					t.Errorf("publish: %v", err)
				case resp.AlreadyPublished:
					alreadyPub.Add(1)
				default:
					published.Add(1)
				}
			}()
		}
		wg.Wait()
		if published.Load() != 1 || alreadyPub.Load() != publishers-1 {
			t.Fatalf("%s: published %d, already_published %d; want 1, %d", id, published.Load(), alreadyPub.Load(), publishers-1)
		}
		got, err := rs[2].decision().GetJob(as(ctx, tokAudit), &agatev1.GetJobRequest{JobId: id})
		if err != nil || got.Job.Attempt != 1 || got.Job.Status != agatev1.JobStatus_JOB_STATUS_APPROVED_AND_PUBLISHED ||
			len(got.Job.Approvals) != 1 {
			t.Fatalf("job after the race = %v, %v", got, err)
		}
	}
}

// TestKillReplicaMidLoad kills one of three replicas with SIGKILL while clients decide
// jobs through all of them: the others keep serving and every acknowledged decision is
// in the database.
func TestKillReplicaMidLoad(t *testing.T) {
	t.Parallel()
	rs := startReplicas(t, pgtest.EmptyURL(t), 3)
	ctx := ctxT(t)
	var (
		mu      sync.Mutex
		acked   = map[string]string{} // job id → acknowledged hash
		killed  atomic.Bool
		afterOK atomic.Int32
	)
	stop := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(stop) && n < 10000; n++ {
				id := fmt.Sprintf("kill-%d-%d", c, n)
				job := &agatev1.Job{JobId: id, Topic: "crm.note.create", Actor: "agent-3",
					Labels: labels(t, map[string]any{"env": "dev"}), Payload: []byte(`{"n":1}`)}
				// A client that loses its replica retries the same job on the next one;
				// Decide is idempotent by job_id.
				for try := range 3 {
					r := rs[(c+n+try)%3]
					cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					d, err := r.decision().Decide(as(cctx, tokDecide), &agatev1.DecideRequest{Job: job})
					cancel()
					if err == nil {
						mu.Lock()
						acked[id] = d.JobHash
						mu.Unlock()
						if killed.Load() {
							afterOK.Add(1)
						}
						break
					}
				}
			}
		}()
	}
	time.Sleep(time.Second)
	rs[2].kill()
	killed.Store(true)
	wg.Wait()

	if afterOK.Load() == 0 {
		t.Fatal("no decision succeeded after the replica was killed")
	}
	if len(acked) < 20 {
		t.Fatalf("only %d decisions acknowledged", len(acked))
	}
	for id, hash := range acked {
		got, err := rs[0].decision().GetJob(as(ctx, tokAudit), &agatev1.GetJobRequest{JobId: id})
		if err != nil || got.Job.JobHash != hash || got.Job.Status != agatev1.JobStatus_JOB_STATUS_ALLOWED {
			t.Fatalf("acknowledged %s lost: %v, %v", id, got, err)
		}
	}
	t.Logf("%d decisions acknowledged, %d after the kill", len(acked), afterOK.Load())
}
