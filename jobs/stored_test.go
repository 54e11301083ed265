package jobs_test

import (
	"context"
	"sync"
	"testing"

	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/store"
)

// swappedStore reads one job's payload as something else, as a job row rewritten in
// the database behind Agate's back would read.
type swappedStore struct {
	store.Store
	mu      sync.Mutex
	swapped map[string][]byte
}

func (s *swappedStore) swap(id string, payload string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.swapped[id] = []byte(payload)
}

func (s *swappedStore) ReadWrite(ctx context.Context, fn func(context.Context, store.Tx) error) error {
	return s.Store.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error { return fn(ctx, swappedTx{tx, s}) })
}

type swappedTx struct {
	store.Tx
	s *swappedStore
}

func (t swappedTx) GetJob(ctx context.Context, id string, forUpdate bool) (store.Job, error) {
	j, err := t.Tx.GetJob(ctx, id, forUpdate)
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	if p, ok := t.s.swapped[id]; ok && err == nil {
		j.Payload = p
	}
	return j, err
}

// TestStoredJobTampered: Publish and Replay re-hash the stored job and hand out
// nothing whose content no longer matches the hash that was approved.
func TestStoredJobTampered(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, st store.Store, m commitMode) {
		t.Parallel()
		ctx := context.Background()
		ss := &swappedStore{Store: st, swapped: map[string][]byte{}}
		e := m.env(t, ss, testPolicy)
		const evil = `{"amount": 999999, "currency": "EUR", "invoice": "INV-1001"}`

		j := e.approved(t)
		ss.swap(j.ID, evil)
		_, err := e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: j.ID, JobHash: j.Hash})
		ee := wantErr(t, err, jobs.CodeDataLoss, jobs.ReasonStoredJobTampered)
		if ee.Meta["expected_job_hash"] != j.Hash || ee.Meta["computed_job_hash"] == j.Hash || ee.Meta["computed_job_hash"] == "" {
			t.Fatalf("meta %v", ee.Meta)
		}
		if got := e.job(t, j.ID); got.Status != store.StatusApproved || got.Attempt != 0 {
			t.Fatalf("job changed: %+v", got)
		}
		ev := e.wantKinds(t, j.ID, "decision,approval,conflict:STORED_JOB_TAMPERED")[2]
		if ev.Principal != dispatcher.ID || ev.JobHash != j.Hash || ev.PresentedHash != ee.Meta["computed_job_hash"] {
			t.Fatalf("conflict event %+v", ev)
		}

		p := e.publishedJob(t, payment)
		ss.swap(p.ID, evil)
		_, err = e.svc.Replay(ctx, dispatcher, jobs.ReplayRequest{JobID: p.ID, JobHash: p.Hash, ExpectedAttempt: 1,
			ReasonCode: jobs.ReplayWorkerOutage, Reason: "worker lost"})
		wantErr(t, err, jobs.CodeDataLoss, jobs.ReasonStoredJobTampered)
		// A repeated Publish hands out the stored job too: it is checked as well.
		_, err = e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: p.ID, JobHash: p.Hash})
		wantErr(t, err, jobs.CodeDataLoss, jobs.ReasonStoredJobTampered)
		e.wantKinds(t, p.ID, "decision,approval,publish,conflict:STORED_JOB_TAMPERED,conflict:STORED_JOB_TAMPERED")
	})
}

func (t swappedTx) GetJobs(ctx context.Context, ids []string, forUpdate bool) ([]store.Job, error) {
	js, err := t.Tx.GetJobs(ctx, ids, forUpdate)
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	for i := range js {
		if p, ok := t.s.swapped[js[i].ID]; ok {
			js[i].Payload = p
		}
	}
	return js, err
}
