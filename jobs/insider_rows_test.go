package jobs_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/storetest"
)

// TestInsiderRewrittenExpiryIsRefused: whoever can write rows moves an approved job's
// expires_at a year on, and Publish hands it out a day after its approval ttl ended:
// checkExpiry trusts the column, and neither the stored-job check nor the evidence
// holds the deadline (the decision event's time and its rule's ttl in the snapshot
// give it). The approval must end when the policy said it does.
func TestInsiderRewrittenExpiryIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := storetest.OpenSQLite(t)
	e := newEnv(t, st, testPolicy)
	j := e.approved(t) // ttl 24h
	err := st.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		row, err := tx.GetJob(ctx, j.ID, true)
		if err != nil {
			return err
		}
		row.ExpiresAt += (365 * 24 * time.Hour).Microseconds()
		return tx.UpdateJob(ctx, row)
	})
	wantNoErr(t, err)
	e.clock.Advance(48 * time.Hour)
	res, err := e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: j.ID, JobHash: j.Hash})
	if err == nil {
		t.Fatalf("published a day after the approval's ttl ended, on a rewritten expires_at: %s", res.Job.Status)
	}
}

// TestInsiderRewrittenSnapshotIsRefused: the policy changes so that production payments
// are denied; whoever can write rows sets an approved payment's snapshot column to the
// new active snapshot, and Publish hands it out: checkDrift compares the column, and
// the stored-job check compares the decision event's hash and decision but not its
// policy_snapshot. An approval given under the old policy is enforced under a policy
// that denies it.
func TestInsiderRewrittenSnapshotIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := storetest.OpenSQLite(t)
	e := newEnv(t, st, testPolicy)
	j := e.approved(t)
	frozen := strings.Replace(testPolicy, "decision: require_human\n    reason: production payments need a human\n    approval: {roles: [admin, finance-approver], quorum: 1, ttl: 24h}",
		"decision: deny\n    reason: payments are frozen", 1)
	if frozen == testPolicy {
		t.Fatal("could not rewrite the policy")
	}
	put, err := e.svc.PutPolicy(ctx, admin, []byte(frozen), true)
	wantNoErr(t, err)
	err = st.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		row, err := tx.GetJob(ctx, j.ID, true)
		if err != nil {
			return err
		}
		row.Snapshot = put.Snapshot.ID
		return tx.UpdateJob(ctx, row)
	})
	wantNoErr(t, err)
	res, err := e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: j.ID, JobHash: j.Hash})
	if err == nil {
		t.Fatalf("published under a policy that denies it, on a rewritten snapshot column: %s", res.Job.Status)
	}
}

// TestInsiderRewrittenQuorumIsRefused: a large transfer needs two approvers; whoever
// can write rows sets its quorum column to 1, one approver completes it, and Publish
// hands it out. No event holds the quorum or the approver roles the rule asked for
// (the snapshot does), so the stored-job check cannot tell.
func TestInsiderRewrittenQuorumIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := storetest.OpenSQLite(t)
	e := newEnv(t, st, testPolicy)
	j := e.decide(t, transfer) // quorum 2
	err := st.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		row, err := tx.GetJob(ctx, j.ID, true)
		if err != nil {
			return err
		}
		row.Quorum = 1
		return tx.UpdateJob(ctx, row)
	})
	wantNoErr(t, err)
	if _, err := e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: j.ID, JobHash: j.Hash}); err != nil {
		t.Fatal(err)
	}
	res, err := e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: j.ID, JobHash: j.Hash})
	if err == nil {
		t.Fatalf("a quorum-2 job was published with one approval, on a rewritten quorum column: %s", res.Job.Status)
	}
}
