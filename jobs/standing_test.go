package jobs_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/storetest"
)

// A principal probing jobs it has no standing on is throttled: past its allowance every
// call it makes on a job answers RESOURCE_EXHAUSTED and nothing more is recorded, whether
// the job exists or not, until the allowance refills.
func TestOutsidersAreRateLimited(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, m commitMode) {
		st := storetest.OpenSQLite(t)
		fc := &fakeClock{now: t0}
		cache, err := snapshots.NewCache(2)
		if err != nil {
			t.Fatal(err)
		}
		svc, err := jobs.New(jobs.Config{Store: st, Tracker: snapshots.NewTracker(st, cache, nil), Cache: cache,
			Clock: fc.Now, Batch: m.batch, Outsiders: jobs.OutsiderLimit{Burst: 3, Every: time.Minute}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(svc.Close)
		if _, err := svc.PutPolicy(context.Background(), admin, []byte(testPolicy), true); err != nil {
			t.Fatal(err)
		}
		e := &env{st: st, svc: svc, clock: fc}
		ctx := context.Background()
		j := e.decide(t, payment)
		prober := jobs.Principal{ID: "prober@example.com", Roles: []string{"treasurer"}}
		approve := func(id string) error {
			_, err := svc.Approve(ctx, prober, jobs.ApproveRequest{JobID: id, JobHash: j.Hash})
			return err
		}
		for _, id := range []string{"nope-1", j.ID, "nope-2"} {
			wantErr(t, approve(id), jobs.CodeNotFound, jobs.ReasonNotFound)
		}
		for _, id := range []string{"nope-3", j.ID} {
			wantErr(t, approve(id), jobs.CodeResourceExhausted, jobs.ReasonRateLimited)
		}
		// Over its limit, the prober still acts where it has standing: misses never lock a
		// caller out of its own work.
		transfer := e.decide(t, transfer)
		_, err = svc.Approve(ctx, prober, jobs.ApproveRequest{JobID: transfer.ID, JobHash: transfer.Hash})
		wantNoErr(t, err)
		evs := e.wantKinds(t, principalChain(prober), "refusal:NO_STANDING,refusal:NO_STANDING,refusal:NO_STANDING")
		if !strings.Contains(evs[1].Reason, "Approve of job "+j.ID) || evs[1].PresentedHash != j.Hash {
			t.Fatalf("refusal %+v", evs[1])
		}
		e.wantKinds(t, j.ID, "decision")
		// Others are not affected; the allowance refills with time.
		_, err = svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: j.ID, JobHash: j.Hash})
		wantNoErr(t, err)
		fc.Advance(time.Minute)
		_, err = svc.Approve(ctx, prober, jobs.ApproveRequest{JobID: transfer.ID, JobHash: transfer.Hash})
		wantNoErr(t, err)
		if got := e.job(t, transfer.ID); got.Status != store.StatusPendingApproval {
			t.Fatalf("status %s", got.Status)
		}
	})
}

// A snapshot stored before service roles were refused as approver roles keeps loading,
// but approvals under such a role are refused: its holders have no standing as approvers.
func TestStoredServiceRoleApproversAreRefused(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, st store.Store, m commitMode) {
		t.Parallel()
		ctx := context.Background()
		e := m.env(t, st, testPolicy)
		legacy := []byte("version: v1\nrules:\n  - id: legacy\n    when: {topic: legacy.job}\n    decision: require_human\n" +
			"    approval: {roles: [audit, dispatch, operator, admin]}\n")
		if _, err := e.svc.PutPolicy(ctx, admin, legacy, true); err == nil {
			t.Fatal("a new policy naming service roles as approvers was accepted")
		}
		canon := snapshots.Canonical(legacy)
		sha, id := snapshots.Digest(canon)
		snap := snapshots.Snapshot{ID: id, SHA256: sha, Source: canon, RuleCount: 1, CreatedAt: t0, CreatedBy: "old-release"}
		err := st.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
			_, err := tx.PutSnapshot(ctx, snap)
			return err
		})
		wantNoErr(t, err)
		if _, err := e.svc.ActivateSnapshot(ctx, admin, id, false); err != nil {
			t.Fatalf("a stored snapshot naming service roles no longer loads: %v", err)
		}
		res, err := e.svc.Decide(ctx, decider, jobs.DecideRequest{JobID: newID("legacy"), Topic: "legacy.job", Actor: actor})
		wantNoErr(t, err)
		j := res.Job
		for _, p := range []jobs.Principal{auditor, dispatcher, operator} {
			_, err := e.svc.Approve(ctx, p, jobs.ApproveRequest{JobID: j.ID, JobHash: j.Hash})
			wantErr(t, err, jobs.CodeNotFound, jobs.ReasonNotFound)
		}
		// An approver role beside the service roles still approves.
		_, err = e.svc.Approve(ctx, jobs.Principal{ID: "root-2@example.com", Roles: []string{"admin"}}, jobs.ApproveRequest{JobID: j.ID, JobHash: j.Hash})
		wantNoErr(t, err)
		e.wantKinds(t, j.ID, "decision,approval")
	})
}
