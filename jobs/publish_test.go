package jobs_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/store"
)

func TestPublish(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, st store.Store, m commitMode) {
		t.Parallel()
		ctx := context.Background()
		e := m.env(t, st, testPolicy)
		publish := func(j store.Job) (jobs.PublishResult, error) {
			return e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: j.ID, JobHash: j.Hash})
		}

		t.Run("approved and allowed, once", func(t *testing.T) {
			for _, c := range []struct {
				spec   jobSpec
				status store.Status
				kinds  string
			}{
				{payment, store.StatusApprovedAndPublished, "decision,approval,publish"},
				{report, store.StatusAllowedAndPublished, "decision,publish"},
			} {
				var j store.Job
				if c.spec.topic == payment.topic {
					j = e.approved(t)
				} else {
					j = e.decide(t, c.spec)
				}
				res, err := publish(j)
				wantNoErr(t, err)
				p := res.Job
				if res.AlreadyPublished || p.Status != c.status || p.Attempt != 1 || p.PublishedAt != t0.UnixMicro() ||
					string(p.Payload) != paymentPayload || p.Hash != j.Hash {
					t.Fatalf("%s: %+v", c.spec.topic, res)
				}
				again, err := publish(j)
				wantNoErr(t, err)
				if !again.AlreadyPublished || !sameJob(again.Job, p) {
					t.Fatalf("%s: repeat %+v", c.spec.topic, again)
				}
				// Both answers carry the approvals the job was published with.
				for _, r := range []jobs.PublishResult{res, again} {
					if wantN := map[bool]int{true: 1, false: 0}[p.ApprovalRequired]; len(r.Approvals) != wantN ||
						wantN == 1 && (r.Approvals[0].Approver != p.ApprovedBy || r.Approvals[0].Revision != p.Revision) {
						t.Fatalf("%s: approvals %+v, want %d by %s", c.spec.topic, r.Approvals, wantN, p.ApprovedBy)
					}
				}
				evs := e.wantKinds(t, j.ID, c.kinds)
				ev := evs[len(evs)-1]
				if ev.Attempt != 1 || ev.Status != string(c.status) || ev.Principal != dispatcher.ID ||
					ev.PolicySnapshot != e.snap || ev.PreviousSnapshot != "" || ev.ApprovedBy != p.ApprovedBy {
					t.Fatalf("%s: publish event %+v", c.spec.topic, ev)
				}
			}
		})

		t.Run("hash mismatch leaves the job", func(t *testing.T) {
			j := e.approved(t)
			_, err := e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: j.ID, JobHash: "sha256:" + strings.Repeat("e", 64)})
			wantErr(t, err, jobs.CodeAborted, jobs.ReasonJobHashMismatch)
			if got := e.job(t, j.ID); !sameJob(got, j) {
				t.Fatalf("job changed: %+v", got)
			}
			e.wantKinds(t, j.ID, "decision,approval,conflict:JOB_HASH_MISMATCH")
		})

		t.Run("refused by state", func(t *testing.T) {
			pending := e.decide(t, payment)
			_, err := publish(pending)
			wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonQuorumNotMet)
			denied := e.decide(t, export)
			_, err = publish(denied)
			wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonNotPending)
			rejected := e.decide(t, payment)
			_, err = e.svc.Reject(ctx, bob, jobs.RejectRequest{JobID: rejected.ID, JobHash: rejected.Hash, Reason: "no"})
			wantNoErr(t, err)
			_, err = publish(rejected)
			wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonAlreadyRejected)
			_, err = e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: "nope", JobHash: "sha256:" + strings.Repeat("0", 64)})
			wantErr(t, err, jobs.CodeNotFound, jobs.ReasonNotFound)
			// Refusals of the dispatcher, which has standing, are each job's evidence.
			e.wantKinds(t, pending.ID, "decision,refusal:QUORUM_NOT_MET")
			e.wantKinds(t, denied.ID, "decision,refusal:NOT_PENDING")
			e.wantKinds(t, rejected.ID, "decision,rejection,refusal:ALREADY_REJECTED")
		})

		t.Run("an approval the evidence lacks", func(t *testing.T) {
			// A job row set to approved with no approval in its evidence (a row writer's
			// shortcut) is refused as tampered, before the quorum is even counted.
			j := e.decide(t, payment)
			err := st.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
				j.Status, j.ApprovedBy, j.ApprovedRole, j.ApprovedAt = store.StatusApproved, alice.ID, "admin", 1
				return tx.UpdateJob(ctx, j)
			})
			wantNoErr(t, err)
			_, err = publish(j)
			wantErr(t, err, jobs.CodeDataLoss, jobs.ReasonStoredJobTampered)
			if got := e.job(t, j.ID); got.Attempt != 0 || got.Status != store.StatusApproved {
				t.Fatalf("job %+v", got)
			}
		})
	})
}

func TestPublishAfterTTL(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, st store.Store, m commitMode) {
		t.Parallel()
		e := m.env(t, st, testPolicy)
		j := e.approved(t)
		e.clock.Advance(24*time.Hour + time.Microsecond)
		_, err := e.svc.Publish(context.Background(), dispatcher, jobs.PublishRequest{JobID: j.ID, JobHash: j.Hash})
		wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonApprovalExpired)
		if got := e.job(t, j.ID); got.Status != store.StatusExpired || got.Attempt != 0 {
			t.Fatalf("job %+v", got)
		}
		e.wantKinds(t, j.ID, "decision,approval,expiry")
	})
}

func TestReportOutcome(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, st store.Store, m commitMode) {
		t.Parallel()
		ctx := context.Background()
		e := m.env(t, st, testPolicy)
		report1 := func(id string, attempt int64, ok bool) (jobs.OutcomeResult, error) {
			return e.svc.ReportOutcome(ctx, dispatcher, jobs.OutcomeRequest{JobID: id, Attempt: attempt, Succeeded: ok, Detail: "exit 0"})
		}
		j := e.publishedJob(t, payment)
		_, err := report1(j.ID, 2, true)
		wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonStaleAttempt)
		res, err := report1(j.ID, 1, true)
		wantNoErr(t, err)
		if res.AlreadyReported || res.Job.Status != store.StatusSucceeded || res.Job.Outcome != "succeeded" {
			t.Fatalf("%+v", res)
		}
		again, err := report1(j.ID, 1, true)
		wantNoErr(t, err)
		if !again.AlreadyReported || again.Job.Status != store.StatusSucceeded {
			t.Fatalf("repeat %+v", again)
		}
		_, err = report1(j.ID, 1, false)
		wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonOutcomeMismatch)
		evs := e.wantKinds(t, j.ID, "decision,approval,publish,refusal:ATTEMPT_MISMATCH,outcome,refusal:OUTCOME_MISMATCH")
		if ev := evs[4]; ev.Attempt != 1 || ev.Status != "succeeded" || ev.Reason != "exit 0" || ev.ApprovedBy != alice.ID {
			t.Fatalf("outcome event %+v", ev)
		}

		f := e.publishedJob(t, report)
		res, err = report1(f.ID, 1, false)
		wantNoErr(t, err)
		if res.Job.Status != store.StatusFailed || res.Job.Outcome != "failed" {
			t.Fatalf("%+v", res)
		}

		pending := e.decide(t, payment)
		_, err = report1(pending.ID, 1, true)
		wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonNotPending)
		_, err = report1(pending.ID, 0, true)
		wantField(t, err, "attempt")
	})
}

func TestReplay(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, st store.Store, m commitMode) {
		t.Parallel()
		ctx := context.Background()
		e := m.env(t, st, testPolicy)
		replay := func(j store.Job, expected int64) (jobs.ReplayResult, error) {
			return e.svc.Replay(ctx, dispatcher, jobs.ReplayRequest{JobID: j.ID, JobHash: j.Hash,
				ExpectedAttempt: expected, ReasonCode: jobs.ReplayWorkerOutage, Reason: "worker pod lost"})
		}

		t.Run("supersedes the expected attempt once", func(t *testing.T) {
			j := e.publishedJob(t, payment)
			e.clock.Advance(48 * time.Hour) // the ttl is not checked again
			_, err := replay(j, 0)
			wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonStaleAttempt)
			res, err := replay(j, 1)
			wantNoErr(t, err)
			at := t0.Add(48 * time.Hour).UnixMicro()
			if res.AlreadyReplayed || res.Job.Attempt != 2 || res.Job.PublishedAt != at || res.Job.Status != store.StatusApprovedAndPublished {
				t.Fatalf("%+v", res)
			}
			again, err := replay(j, 1)
			wantNoErr(t, err)
			if !again.AlreadyReplayed || again.Job.Attempt != 2 {
				t.Fatalf("repeat %+v", again)
			}
			third, err := replay(j, 2)
			wantNoErr(t, err)
			if third.AlreadyReplayed || third.Job.Attempt != 3 {
				t.Fatalf("third %+v", third)
			}
			evs := e.wantKinds(t, j.ID, "decision,approval,publish,refusal:ATTEMPT_MISMATCH,replay,replay")
			if ev := evs[4]; ev.Attempt != 2 || ev.ReplayReasonCode != jobs.ReplayWorkerOutage ||
				ev.Reason != "worker pod lost" || ev.Status != "approved_and_published" || ev.At != at {
				t.Fatalf("replay event %+v", ev)
			}
			// The old attempt's outcome is stale; the current one's is taken.
			_, err = e.svc.ReportOutcome(ctx, dispatcher, jobs.OutcomeRequest{JobID: j.ID, Attempt: 2, Succeeded: true})
			wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonStaleAttempt)
			_, err = e.svc.ReportOutcome(ctx, dispatcher, jobs.OutcomeRequest{JobID: j.ID, Attempt: 3, Succeeded: true})
			wantNoErr(t, err)
			_, err = replay(j, 3)
			wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonNotPending)
			again, err = replay(j, 2) // a late retry of the last replay still answers already_replayed
			wantNoErr(t, err)
			if !again.AlreadyReplayed {
				t.Fatalf("late retry %+v", again)
			}
		})

		t.Run("a lost first publish", func(t *testing.T) {
			j := e.approved(t)
			res, err := replay(j, 0)
			wantNoErr(t, err)
			if res.Job.Attempt != 1 || res.Job.Status != store.StatusApprovedAndPublished {
				t.Fatalf("%+v", res)
			}
			pub, err := e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: j.ID, JobHash: j.Hash})
			wantNoErr(t, err)
			if !pub.AlreadyPublished {
				t.Fatal("Publish after a replay must be a repeat")
			}
			e.wantKinds(t, j.ID, "decision,approval,replay")
		})

		t.Run("refusals", func(t *testing.T) {
			j := e.publishedJob(t, report)
			_, err := e.svc.Replay(ctx, dispatcher, jobs.ReplayRequest{JobID: j.ID, JobHash: j.Hash, ExpectedAttempt: 1, ReasonCode: "BORED", Reason: "x"})
			wantField(t, err, "reason_code")
			_, err = e.svc.Replay(ctx, dispatcher, jobs.ReplayRequest{JobID: j.ID, JobHash: j.Hash, ExpectedAttempt: 1, ReasonCode: jobs.ReplayPublishLost})
			wantField(t, err, "reason")
			_, err = e.svc.Replay(ctx, dispatcher, jobs.ReplayRequest{JobID: j.ID, JobHash: "sha256:" + strings.Repeat("0", 64), ExpectedAttempt: 1,
				ReasonCode: jobs.ReplayPublishLost, Reason: "x"})
			wantErr(t, err, jobs.CodeAborted, jobs.ReasonJobHashMismatch)
			e.wantKinds(t, j.ID, "decision,publish,conflict:JOB_HASH_MISMATCH")
			pending := e.decide(t, payment)
			_, err = replay(pending, 0)
			wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonNotPending)
		})
	})
}

func TestCancel(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, st store.Store, m commitMode) {
		t.Parallel()
		ctx := context.Background()
		e := m.env(t, st, testPolicy)
		cancel := func(p jobs.Principal, j store.Job, reason string) (jobs.CancelResult, error) {
			return e.svc.Cancel(ctx, p, jobs.CancelRequest{JobID: j.ID, Reason: reason})
		}
		pending := e.decide(t, payment)
		_, err := cancel(decider, pending, "")
		wantField(t, err, "reason")
		// Neither an approver, nor another service, nor admin (an approver role) may
		// cancel: they have no standing, learn nothing and leave no trace on the job.
		for _, p := range []jobs.Principal{alice, mallory, admin, dispatcher} {
			_, err = cancel(p, pending, "not mine")
			wantErr(t, err, jobs.CodeNotFound, jobs.ReasonNotFound)
		}
		res, err := cancel(decider, pending, "order withdrawn")
		wantNoErr(t, err)
		if res.AlreadyCancelled || res.Job.Status != store.StatusCancelled || res.CancelledBy != decider.ID {
			t.Fatalf("%+v", res)
		}
		again, err := cancel(operator, pending, "again")
		wantNoErr(t, err)
		if !again.AlreadyCancelled || again.CancelledBy != decider.ID || again.CancelledAt != t0.UnixMicro() {
			t.Fatalf("repeat %+v", again)
		}
		evs := e.wantKinds(t, pending.ID, "decision,cancel")
		if evs[1].Reason != "order withdrawn" || evs[1].Status != "cancelled" {
			t.Fatalf("cancel event %+v", evs[1])
		}
		_, err = e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: pending.ID, JobHash: pending.Hash})
		wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonNotPending)

		approved := e.approved(t)
		res, err = cancel(operator, approved, "approval withdrawn")
		wantNoErr(t, err)
		if res.Job.Status != store.StatusCancelled {
			t.Fatalf("%+v", res)
		}
		_, err = e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: approved.ID, JobHash: approved.Hash})
		wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonNotPending)

		published := e.publishedJob(t, payment)
		_, err = cancel(decider, published, "too late")
		wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonNotPending)
		allowed := e.decide(t, report)
		_, err = cancel(decider, allowed, "allowed jobs are not withdrawn")
		wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonNotPending)
	})
}
