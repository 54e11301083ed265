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

// TestInsiderPublishRepeat: a published job is answered again only as the publisher's
// retry, while its approval and snapshot still hold. A second dispatcher, a retry after
// the ttl, or a retry after the policy changed is refused and leaves a refusal on the
// job's chain; the publication itself stands.
func TestInsiderPublishRepeat(t *testing.T) {
	t.Parallel()
	other := jobs.Principal{ID: "dispatcher-2", Roles: []string{"dispatch"}}
	tests := []struct {
		name   string
		before func(t *testing.T, e *env)
		caller jobs.Principal
		code   jobs.Code
		reason string // "" for the same answer as the first publish
	}{
		{name: "the publisher's retry", caller: dispatcher},
		{name: "another dispatcher", caller: other, code: jobs.CodeFailedPrecondition, reason: jobs.ReasonNotPending},
		{name: "after the ttl", before: func(t *testing.T, e *env) { e.clock.Advance(25 * time.Hour) },
			caller: dispatcher, code: jobs.CodeFailedPrecondition, reason: jobs.ReasonApprovalExpired},
		{name: "after the policy changed", before: func(t *testing.T, e *env) {
			frozen := strings.Replace(testPolicy, "reason: production payments need a human", "reason: production payments need a human being", 1)
			if _, err := e.svc.PutPolicy(context.Background(), admin, []byte(frozen), true); err != nil {
				t.Fatal(err)
			}
		}, caller: dispatcher, code: jobs.CodeAborted, reason: jobs.ReasonSnapshotDrift},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, storetest.OpenSQLite(t), testPolicy)
			j := e.publishedJob(t, payment)
			if tt.before != nil {
				tt.before(t, e)
			}
			n := len(e.events(t, j.ID))
			res, err := e.svc.Publish(context.Background(), tt.caller, jobs.PublishRequest{JobID: j.ID, JobHash: j.Hash})
			evs := e.events(t, j.ID)
			if tt.reason == "" {
				wantNoErr(t, err)
				if !res.AlreadyPublished || res.Job.Attempt != 1 || len(evs) != n {
					t.Fatalf("retry: already %v attempt %d, events %d → %d", res.AlreadyPublished, res.Job.Attempt, n, len(evs))
				}
				return
			}
			wantErr(t, err, tt.code, tt.reason)
			if len(evs) != n+1 || evs[n].Conflict != tt.reason || evs[n].Principal != tt.caller.ID {
				t.Fatalf("evidence after the refusal: %s", kinds(evs))
			}
			if got := e.job(t, j.ID); got.Status != j.Status || got.Attempt != 1 {
				t.Fatalf("job after the refusal: %s attempt %d, want %s attempt 1", got.Status, got.Attempt, j.Status)
			}
		})
	}
}

// TestInsiderPublishedStatusWithoutPublishEvent (the attack): an insider who can write
// rows sets an approved job's status to approved_and_published (and an allowed one's to
// allowed_and_published) without any Publish. checkRepeat only compares the caller with
// the principal of the latest publish or replay event; with none on the chain, any
// dispatcher's Publish is answered as a retry: AlreadyPublished, the job handed out, and
// nothing recorded, so the evidence never shows that the job left. A published status
// whose chain holds no publish must be refused as a tampered row, and recorded.
func TestInsiderPublishedStatusWithoutPublishEvent(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		e := newEnv(t, st, testPolicy)
		for name, j := range map[string]store.Job{
			"approved": e.approved(t),
			"allowed":  e.decide(t, report),
		} {
			to := store.StatusApprovedAndPublished
			if name == "allowed" {
				to = store.StatusAllowedAndPublished
			}
			setStatus(t, st, j.ID, to)
			before := len(e.events(t, j.ID))
			res, err := e.svc.Publish(context.Background(), dispatcher, jobs.PublishRequest{JobID: j.ID, JobHash: j.Hash})
			if err == nil {
				t.Errorf("%s job set to %s behind Agate's back: Publish handed it out (already published %v, attempt %d) with no publish on its chain",
					name, to, res.AlreadyPublished, res.Job.Attempt)
			}
			if evs := e.events(t, j.ID); len(evs) == before {
				t.Errorf("%s job: the Publish left no evidence: %s", name, kinds(evs))
			}
		}
	})
}

// TestInsiderReplayRepeatByAnotherDispatcher (the attack): checkRepeat answers a
// repeated Publish only as its publisher's retry, within the ttl and the snapshot it
// was published under, so that a second dispatcher never gets a second go-ahead. A
// repeated Replay has no such check: replayedTo only asks whether the last replay ran
// the job as the current attempt. Any other dispatcher, or the replayer after the
// policy moved on, sends the same Replay again and is handed the job (AlreadyReplayed,
// with its approvals), and nothing is recorded.
func TestInsiderReplayRepeatByAnotherDispatcher(t *testing.T) {
	t.Parallel()
	other := jobs.Principal{ID: "dispatcher-2", Roles: []string{"dispatch"}}
	e := newEnv(t, storetest.OpenSQLite(t), testPolicy)
	ctx := context.Background()
	for name, change := range map[string]func(){
		"another dispatcher": func() {},
		"after the policy changed": func() {
			frozen := strings.Replace(testPolicy, "reason: production payments need a human", "reason: production payments need a human being, again", 1)
			if _, err := e.svc.PutPolicy(ctx, admin, []byte(frozen), true); err != nil {
				t.Fatal(err)
			}
		},
	} {
		j := e.publishedJob(t, payment)
		req := jobs.ReplayRequest{JobID: j.ID, JobHash: j.Hash, ExpectedAttempt: 1,
			ReasonCode: jobs.ReplayWorkerOutage, Reason: "worker lost"}
		if _, err := e.svc.Replay(ctx, dispatcher, req); err != nil {
			t.Fatalf("%s: Replay: %v", name, err)
		}
		change()
		caller := other
		if name != "another dispatcher" {
			caller = dispatcher
		}
		n := len(e.events(t, j.ID))
		res, err := e.svc.Replay(ctx, caller, req)
		if err == nil {
			t.Errorf("%s: the repeated Replay handed the job out again (already replayed %v, attempt %d, %d approvals)",
				name, res.AlreadyReplayed, res.Job.Attempt, len(res.Approvals))
		}
		if evs := e.events(t, j.ID); len(evs) != n+1 {
			t.Errorf("%s: the repeated Replay left no evidence: %s", name, kinds(evs))
		}
	}
}

// TestBatchPublishRepeatComparesIdentityKeys: "Dispatcher-1" and "dispatcher-1" are one
// principal to Agate (identity.Key: separation of duties, quorum and the tokens file
// compare canonical forms), but checkRepeat compares the publish event's principal with
// the caller's raw id, so the publisher's own retry, sent under its id's other spelling,
// is refused as another principal's and recorded as a refusal.
func TestBatchPublishRepeatComparesIdentityKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.OpenSQLite(t), testPolicy)
	j := e.publishedJob(t, payment)
	same := jobs.Principal{ID: strings.ToUpper(dispatcher.ID[:1]) + dispatcher.ID[1:], Roles: dispatcher.Roles}
	res, err := e.svc.Publish(context.Background(), same, jobs.PublishRequest{JobID: j.ID, JobHash: j.Hash})
	if err != nil {
		t.Fatalf("the publisher's retry as %q (one identity with %q): %v", same.ID, dispatcher.ID, err)
	}
	if !res.AlreadyPublished || res.Job.Attempt != 1 {
		t.Fatalf("retry: %+v", res)
	}
}
