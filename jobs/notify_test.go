package jobs_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/store"
)

// notifications lists the outbox rows of a job as "kind@event-kind", checking that each
// names an event of the job's chain and is pending with its stable id.
func (e *env) notifications(t *testing.T, jobID string) string {
	t.Helper()
	var ns []store.Notification
	err := e.st.Read(context.Background(), func(ctx context.Context, tx store.Tx) (err error) {
		ns, err = tx.ListNotifications(ctx, store.NotificationQuery{JobID: jobID})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]evidence.Event{}
	for _, ev := range e.events(t, jobID) {
		byID[ev.EventID] = ev
	}
	// ListNotifications orders by (done_at, id); order by the events' chain instead.
	seqOf := func(n store.Notification) int64 { return byID[n.EventID].Seq }
	for i := 1; i < len(ns); i++ {
		for k := i; k > 0 && seqOf(ns[k]) < seqOf(ns[k-1]); k-- {
			ns[k], ns[k-1] = ns[k-1], ns[k]
		}
	}
	var out []string
	for _, n := range ns {
		ev, ok := byID[n.EventID]
		switch {
		case !ok:
			t.Fatalf("notification %s names event %s, not on %s's chain", n.ID, n.EventID, jobID)
		case n.State != store.NotificationPending || n.Attempts != 0 || n.CreatedAt != ev.At || n.NextAt != ev.At:
			t.Fatalf("notification %+v of event at %d", n, ev.At)
		case !strings.HasPrefix(n.ID, "msg_") || len(n.ID) != 36:
			t.Fatalf("notification id %q", n.ID)
		}
		out = append(out, n.Kind+"@"+string(ev.Kind))
	}
	return strings.Join(out, ",")
}

func (e *env) wantNotifications(t *testing.T, jobID, want string) {
	t.Helper()
	if got := e.notifications(t, jobID); got != want {
		t.Fatalf("notifications of %s = %q, want %q", jobID, got, want)
	}
}

// Every transition someone waits for writes its notification with its evidence, and
// nothing else does: not allowed or denied decisions, partial quorums, repeats or
// refusals.
func TestNotificationsOfTransitions(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, st store.Store, m commitMode) {
		t.Parallel()
		ctx := context.Background()
		e := m.env(t, st, testPolicy)

		allowed, denied := e.decide(t, report), e.decide(t, export)
		e.wantNotifications(t, allowed.ID, "")
		e.wantNotifications(t, denied.ID, "")

		j := e.decide(t, payment)
		e.wantNotifications(t, j.ID, "pending_approval@decision")
		_, err := e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: j.ID, JobHash: j.Hash})
		wantNoErr(t, err)
		_, err = e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: j.ID, JobHash: j.Hash}) // repeat
		wantNoErr(t, err)
		_, err = e.svc.Publish(ctx, dispatcher, jobs.PublishRequest{JobID: j.ID, JobHash: j.Hash})
		wantNoErr(t, err)
		_, err = e.svc.ReportOutcome(ctx, dispatcher, jobs.OutcomeRequest{JobID: j.ID, Attempt: 1, Succeeded: true})
		wantNoErr(t, err)
		e.wantNotifications(t, j.ID, "pending_approval@decision,approved@approval,published@publish")

		// A quorum of two: the first approval announces nothing.
		q := e.decide(t, transfer)
		_, err = e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: q.ID, JobHash: q.Hash})
		wantNoErr(t, err)
		_, err = e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: q.ID, JobHash: "sha256:" + strings.Repeat("0", 64)})
		wantErr(t, err, jobs.CodeAborted, jobs.ReasonJobHashMismatch)
		e.wantNotifications(t, q.ID, "pending_approval@decision")
		_, err = e.svc.Approve(ctx, carol, jobs.ApproveRequest{JobID: q.ID, JobHash: q.Hash})
		wantNoErr(t, err)
		e.wantNotifications(t, q.ID, "pending_approval@decision,approved@approval")

		r := e.decide(t, payment)
		_, err = e.svc.Reject(ctx, alice, jobs.RejectRequest{JobID: r.ID, JobHash: r.Hash, Reason: "wrong invoice"})
		wantNoErr(t, err)
		_, err = e.svc.Reject(ctx, bob, jobs.RejectRequest{JobID: r.ID, JobHash: r.Hash, Reason: "again"})
		wantNoErr(t, err)
		e.wantNotifications(t, r.ID, "pending_approval@decision,rejected@rejection")

		c := e.decide(t, payment)
		_, err = e.svc.Cancel(ctx, decider, jobs.CancelRequest{JobID: c.ID, Reason: "not needed"})
		wantNoErr(t, err)
		e.wantNotifications(t, c.ID, "pending_approval@decision,cancelled@cancel")

		if e.clock != nil {
			x := e.decide(t, payment)
			e.clock.Advance(25 * time.Hour)
			_, err = e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: x.ID, JobHash: x.Hash})
			wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonApprovalExpired)
			e.wantNotifications(t, x.ID, "pending_approval@decision,expired@expiry")
		}

		// Drift moves a pending job to conflict; its re-decision waits for approval again.
		d := e.decide(t, payment)
		_, err = e.svc.PutPolicy(ctx, admin, []byte(calmPolicy), true)
		wantNoErr(t, err)
		_, err = e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: d.ID, JobHash: d.Hash})
		wantErr(t, err, jobs.CodeAborted, jobs.ReasonSnapshotDrift)
		_, err = e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: d.ID, JobHash: d.Hash}) // refused: in conflict
		if err == nil {
			t.Fatal("Approve of a job in conflict succeeded")
		}
		e.wantNotifications(t, d.ID, "pending_approval@decision,conflict@conflict")
		_, err = e.svc.Decide(ctx, decider, jobs.DecideRequest{JobID: d.ID, Topic: payment.topic, Actor: actor,
			Labels: payment.labels, Payload: []byte(paymentPayload)})
		wantNoErr(t, err)
		e.wantNotifications(t, d.ID, "pending_approval@decision,conflict@conflict,pending_approval@decision")
	})
}

// failingCommit runs each write transaction's body, then rolls the transaction back, as
// a commit that fails (or a crash before it) would.
type failingCommit struct{ store.Store }

var errCommit = errors.New("injected: the commit failed")

func (f *failingCommit) ReadWrite(ctx context.Context, fn func(context.Context, store.Tx) error) error {
	return f.Store.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		if err := fn(ctx, tx); err != nil {
			return err
		}
		return errCommit
	})
}

// A transition that does not commit announces nothing: its notification rolls back with
// it, on the batched Decide path and on every other.
func TestNotificationsRollBack(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, st store.Store, m commitMode) {
		t.Parallel()
		ctx := context.Background()
		e := m.env(t, st, testPolicy)
		pending := e.decide(t, payment)
		failing := m.env(t, &failingCommit{st}, "")

		req := payment.request(newID("rolled-back"))
		if _, err := failing.svc.Decide(ctx, decider, req); err == nil {
			t.Fatal("Decide succeeded without a commit")
		}
		if _, err := failing.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: pending.ID, JobHash: pending.Hash}); err == nil {
			t.Fatal("Approve succeeded without a commit")
		}
		if _, err := failing.svc.Cancel(ctx, decider, jobs.CancelRequest{JobID: pending.ID, Reason: "no"}); err == nil {
			t.Fatal("Cancel succeeded without a commit")
		}
		e.wantNotifications(t, req.JobID, "")
		e.wantNotifications(t, pending.ID, "pending_approval@decision")
		var all []store.Notification
		err := st.Read(ctx, func(ctx context.Context, tx store.Tx) (err error) {
			all, err = tx.ListNotifications(ctx, store.NotificationQuery{})
			return err
		})
		wantNoErr(t, err)
		if len(all) != 1 {
			t.Fatalf("%d notifications stored, want only the committed one", len(all))
		}
	})
}
