package jobs_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/agate-pdp/agate/jobs"
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
