package jobs_test

import (
	"context"
	"testing"

	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/store"
)

// TestSnapshotDrift decides jobs under one snapshot, activates another, and walks every
// transition that must notice.
func TestSnapshotDrift(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, st store.Store, m commitMode) {
		t.Parallel()
		ctx := context.Background()
		e := m.env(t, st, testPolicy)
		a := e.snap

		partial := e.decide(t, transfer) // one approval of two, then drift
		_, err := e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: partial.ID, JobHash: partial.Hash})
		wantNoErr(t, err)
		toReject := e.decide(t, payment)
		approved := e.approved(t)
		stillAllowed := e.decide(t, jobSpec{"ops.restart", map[string]any{"env": "dev"}})
		nowDenied := e.decide(t, report)
		pubApproved := e.publishedJob(t, payment)
		pubAllowed := e.publishedJob(t, jobSpec{"ops.restart", map[string]any{"env": "dev"}})

		put, err := e.svc.PutPolicy(ctx, admin, []byte(driftPolicy), false)
		wantNoErr(t, err)
		b := put.Snapshot.ID
		preview, err := e.svc.ActivateSnapshot(ctx, admin, b, true)
		wantNoErr(t, err)
		if preview.Activated || preview.Previous != a || preview.PendingDrift != 2 || preview.ApprovedDrift != 1 {
			t.Fatalf("preview %+v", preview)
		}
		act, err := e.svc.ActivateSnapshot(ctx, admin, b, false)
		wantNoErr(t, err)
		if !act.Activated || act.Previous != a {
			t.Fatalf("activation %+v", act)
		}

		wantDrift := func(err error, j store.Job, kinds string) {
			t.Helper()
			ee := wantErr(t, err, jobs.CodeAborted, jobs.ReasonSnapshotDrift)
			if ee.Meta["expected_snapshot"] != a || ee.Meta["active_snapshot"] != b {
				t.Fatalf("meta %v", ee.Meta)
			}
			if got := e.job(t, j.ID); got.Status != store.StatusConflict || got.Snapshot != a {
				t.Fatalf("job %+v", got)
			}
			evs := e.wantKinds(t, j.ID, kinds)
			if ev := evs[len(evs)-1]; ev.PolicySnapshot != b || ev.PreviousSnapshot != a || ev.Status != "conflict" {
				t.Fatalf("conflict event %+v", ev)
			}
		}

		_, err = e.svc.Approve(ctx, carol, jobs.ApproveRequest{JobID: partial.ID, JobHash: partial.Hash})
		wantDrift(err, partial, "decision,approval,conflict:SNAPSHOT_DRIFT")
		_, err = e.svc.Reject(ctx, bob, jobs.RejectRequest{JobID: toReject.ID, JobHash: toReject.Hash, Reason: "no"})
		wantDrift(err, toReject, "decision,conflict:SNAPSHOT_DRIFT")
		_, err = e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: approved.ID, JobHash: approved.Hash})
		wantDrift(err, approved, "decision,approval,conflict:SNAPSHOT_DRIFT")
		_, err = e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: nowDenied.ID, JobHash: nowDenied.Hash})
		wantDrift(err, nowDenied, "decision,conflict:SNAPSHOT_DRIFT")
		_, err = e.svc.Replay(ctx, dispatcher, jobs.ReplayRequest{JobID: pubApproved.ID, JobHash: pubApproved.Hash,
			ExpectedAttempt: 1, ReasonCode: jobs.ReplayOutcomeTimeout, Reason: "no outcome"})
		wantDrift(err, pubApproved, "decision,approval,publish,conflict:SNAPSHOT_DRIFT")

		t.Run("an allowed job still allowed is published under the active snapshot", func(t *testing.T) {
			res, err := e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: stillAllowed.ID, JobHash: stillAllowed.Hash})
			wantNoErr(t, err)
			if res.Job.Status != store.StatusAllowedAndPublished {
				t.Fatalf("%+v", res.Job)
			}
			ev := e.wantKinds(t, stillAllowed.ID, "decision,publish")[1]
			if ev.PolicySnapshot != b || ev.PreviousSnapshot != a {
				t.Fatalf("publish event %+v", ev)
			}
			rep, err := e.svc.Replay(ctx, dispatcher, jobs.ReplayRequest{JobID: pubAllowed.ID, JobHash: pubAllowed.Hash,
				ExpectedAttempt: 1, ReasonCode: jobs.ReplayWorkerOutage, Reason: "lost"})
			wantNoErr(t, err)
			if rep.Job.Attempt != 2 {
				t.Fatalf("%+v", rep.Job)
			}
			if ev := e.wantKinds(t, pubAllowed.ID, "decision,publish,replay")[2]; ev.PolicySnapshot != b || ev.PreviousSnapshot != a {
				t.Fatalf("replay event %+v", ev)
			}
		})

		t.Run("a job in conflict is re-decided, and old approvals no longer count", func(t *testing.T) {
			req := transfer.request(partial.ID)
			req.TraceID = partial.TraceID
			res, err := e.svc.Decide(ctx, decider, req)
			wantNoErr(t, err)
			j := res.Job
			if res.AlreadyDecided || j.Revision != 2 || j.Snapshot != b || j.Status != store.StatusPendingApproval {
				t.Fatalf("%+v", res)
			}
			v, err := e.svc.GetJob(ctx, auditor, j.ID)
			wantNoErr(t, err)
			if len(v.Approvals) != 0 {
				t.Fatalf("approvals of revision 1 count: %+v", v.Approvals)
			}
			evs := e.wantKinds(t, j.ID, "decision,approval,conflict:SNAPSHOT_DRIFT,decision")
			if evs[3].PolicySnapshot != b || evs[0].PolicySnapshot != a {
				t.Fatalf("decision events %+v / %+v", evs[0], evs[3])
			}
			first, err := e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: j.ID, JobHash: j.Hash})
			wantNoErr(t, err)
			if first.AlreadyApproved || first.Job.Status != store.StatusPendingApproval {
				t.Fatalf("alice again: %+v", first)
			}
			second, err := e.svc.Approve(ctx, carol, jobs.ApproveRequest{JobID: j.ID, JobHash: j.Hash})
			wantNoErr(t, err)
			if second.Job.Status != store.StatusApproved || len(second.Approvals) != 2 {
				t.Fatalf("carol: %+v", second)
			}
			// A re-decision with different content is tampering, whatever the status.
			bad := transfer.request(toReject.ID)
			_, err = e.svc.Decide(ctx, decider, bad)
			wantErr(t, err, jobs.CodeAborted, jobs.ReasonJobHashMismatch)
			if got := e.job(t, toReject.ID); got.Status != store.StatusConflict || got.Revision != 1 {
				t.Fatalf("tampered re-decision changed the job: %+v", got)
			}
		})
	})
}
