package jobs_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agate-pdp/agate/canonical"
	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/store"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, st store.Store, m commitMode) {
		t.Parallel()
		e := m.env(t, st, testPolicy)
		ctx := context.Background()

		t.Run("outcomes", func(t *testing.T) {
			for _, c := range []struct {
				spec     jobSpec
				status   store.Status
				decision string
				rule     string
				matched  []string
			}{
				{report, store.StatusAllowed, "allow", "default", nil},
				{export, store.StatusDenied, "deny", "deny-export", []string{"deny-export"}},
				{payment, store.StatusPendingApproval, "require_human", "finance-prod", []string{"finance-prod"}},
				{transfer, store.StatusPendingApproval, "require_human", "transfer-quorum", []string{"transfer-quorum"}},
			} {
				req := c.spec.request(newID("decide"))
				res, err := e.svc.Decide(ctx, decider, req)
				wantNoErr(t, err)
				j := res.Job
				hash, _ := canonical.JobHash(req.Topic, req.Actor, req.Labels, req.Payload)
				if res.AlreadyDecided || j.Status != c.status || j.Decision != c.decision || j.RuleID != c.rule ||
					!slices.Equal(j.MatchedRules, c.matched) || j.Hash != hash || j.Snapshot != e.snap ||
					j.SubmittedBy != decider.ID || j.TraceID != req.TraceID || j.Revision != 1 ||
					j.DecidedAt != t0.UnixMicro() || j.Reason == "" || string(j.Labels) != `{"env":"`+req.Labels["env"].(string)+`"}` {
					t.Fatalf("%s: got %+v", c.spec.topic, j)
				}
				if human := c.decision == "require_human"; j.ApprovalRequired != human ||
					human != (j.ExpiresAt > 0) || human != (j.Quorum > 0) || human != (len(j.ApprovalRoles) > 0) {
					t.Fatalf("%s: approval fields %+v", c.spec.topic, j)
				}
				if got := e.job(t, j.ID); !sameJob(got, j) {
					t.Fatalf("stored %+v\nreturned %+v", got, j)
				}
				evs := e.wantKinds(t, j.ID, "decision")
				ev := evs[0]
				if ev.Decision != c.decision || ev.RuleID != c.rule || ev.JobHash != hash || ev.PolicySnapshot != e.snap ||
					ev.Status != string(c.status) || ev.Principal != decider.ID || ev.Actor != actor ||
					ev.TraceID != req.TraceID || ev.At != t0.UnixMicro() || ev.ApprovalRequired != j.ApprovalRequired ||
					ev.Reason != j.Reason || !slices.Equal(ev.MatchedRules, c.matched) {
					t.Fatalf("decision event %+v", ev)
				}
			}
		})

		t.Run("approval requirement from the rule", func(t *testing.T) {
			j := e.decide(t, transfer)
			if !slices.Equal(j.ApprovalRoles, []string{"finance-approver", "treasurer"}) || j.Quorum != 2 ||
				j.ExpiresAt != t0.Add(time.Hour).UnixMicro() {
				t.Fatalf("got roles %v quorum %d expires %d", j.ApprovalRoles, j.Quorum, j.ExpiresAt)
			}
		})

		t.Run("repeat returns the first decision", func(t *testing.T) {
			req := payment.request(newID("repeat"))
			first, err := e.svc.Decide(ctx, decider, req)
			wantNoErr(t, err)
			req.TraceID = "" // not part of the content
			again, err := e.svc.Decide(ctx, decider, req)
			wantNoErr(t, err)
			if !again.AlreadyDecided || !sameJob(again.Job, first.Job) || again.Job.SubmittedBy != decider.ID {
				t.Fatalf("repeat: %+v", again)
			}
			e.wantKinds(t, req.JobID, "decision")
		})

		t.Run("a job id belongs to its submitter", func(t *testing.T) {
			req := payment.request(newID("owned"))
			first, err := e.svc.Decide(ctx, decider, req)
			wantNoErr(t, err)
			squatter := jobs.Principal{ID: "svc-squatter", Roles: []string{"decide"}}
			tampered := req
			tampered.Payload = []byte(`{"amount": 1}`)
			// Same content or not, the other submitter gets one answer that holds no hash,
			// content or status, and the job's chain does not grow.
			for _, r := range []jobs.DecideRequest{req, tampered} {
				_, err := e.svc.Decide(ctx, squatter, r)
				ee := wantErr(t, err, jobs.CodeAlreadyExists, jobs.ReasonJobIDInUse)
				if len(ee.Meta) != 0 || strings.Contains(ee.Msg, first.Job.Hash) || strings.Contains(ee.Msg, "pending") {
					t.Fatalf("the refusal reveals the job: %q %v", ee.Msg, ee.Meta)
				}
			}
			// Nor can it re-decide the job once it sits in conflict.
			err = st.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
				j := first.Job
				j.Status = store.StatusConflict
				return tx.UpdateJob(ctx, j)
			})
			wantNoErr(t, err)
			_, err = e.svc.Decide(ctx, squatter, req)
			wantErr(t, err, jobs.CodeAlreadyExists, jobs.ReasonJobIDInUse)
			if got := e.job(t, req.JobID); got.Status != store.StatusConflict || got.Revision != 1 {
				t.Fatalf("job changed: %+v", got)
			}
			e.wantKinds(t, req.JobID, "decision")
			evs := e.wantKinds(t, principalChain(squatter), "refusal:JOB_ID_IN_USE,refusal:JOB_ID_IN_USE,refusal:JOB_ID_IN_USE")
			if !strings.Contains(evs[0].Reason, req.JobID) || evs[0].Principal != squatter.ID {
				t.Fatalf("refusal %+v", evs[0])
			}
			// Its owner, under another spelling of its id, is still its owner.
			shouting := jobs.Principal{ID: "SVC-ORDERS", Roles: []string{"decide"}}
			res, err := e.svc.Decide(ctx, shouting, req)
			wantNoErr(t, err)
			if res.Job.Revision != 2 {
				t.Fatalf("re-decision by the owner: %+v", res.Job)
			}
		})

		t.Run("actors have one canonical form", func(t *testing.T) {
			for _, bad := range []string{" agent-7", "agent-7 ", "agent\x00-7", "agent-7\u200b", "\xff"} {
				req := payment.request(newID("actor"))
				req.Actor = bad
				_, err := e.svc.Decide(ctx, decider, req)
				wantField(t, err, "job.actor")
			}
			for _, good := range []string{"agent-7", "alice@example.com", "Finance Bot", "Ålice"} {
				req := payment.request(newID("actor"))
				req.Actor = good
				_, err := e.svc.Decide(ctx, decider, req)
				wantNoErr(t, err)
			}
		})

		t.Run("different content is a hash mismatch and changes nothing", func(t *testing.T) {
			req := payment.request(newID("tamper"))
			first, err := e.svc.Decide(ctx, decider, req)
			wantNoErr(t, err)
			req.Payload = []byte(`{"amount": 99999, "currency": "EUR", "invoice": "INV-1001"}`)
			_, err = e.svc.Decide(ctx, decider, req)
			ee := wantErr(t, err, jobs.CodeAborted, jobs.ReasonJobHashMismatch)
			tampered, _ := canonical.JobHash(req.Topic, req.Actor, req.Labels, req.Payload)
			if ee.Meta["expected_job_hash"] != first.Job.Hash || ee.Meta["presented_job_hash"] != tampered {
				t.Fatalf("meta %v", ee.Meta)
			}
			if got := e.job(t, req.JobID); !sameJob(got, first.Job) {
				t.Fatalf("job changed: %+v", got)
			}
			evs := e.wantKinds(t, req.JobID, "decision,conflict:JOB_HASH_MISMATCH")
			if c := evs[1]; c.JobHash != first.Job.Hash || c.PresentedHash != tampered || c.Status != "pending_approval" {
				t.Fatalf("conflict event %+v", c)
			}
		})

		t.Run("generated trace id and empty payload", func(t *testing.T) {
			req := report.request(newID("trace"))
			req.TraceID, req.Payload, req.Labels = "", nil, map[string]any{"env": "dev"}
			res, err := e.svc.Decide(ctx, decider, req)
			wantNoErr(t, err)
			if !strings.HasPrefix(res.Job.TraceID, "trc_") || string(res.Job.Payload) != "{}" {
				t.Fatalf("trace %q payload %q", res.Job.TraceID, res.Job.Payload)
			}
			same, _ := canonical.JobHash(req.Topic, req.Actor, req.Labels, []byte("{}"))
			if res.Job.Hash != same {
				t.Fatal("an empty payload must hash as {}")
			}
		})

		t.Run("bad input changes nothing", func(t *testing.T) {
			long := strings.Repeat("x", 129)
			big := []byte(`{"a":"` + strings.Repeat("x", 1<<20) + `"}`)
			for _, c := range []struct {
				name  string
				edit  func(r *jobs.DecideRequest)
				field string
			}{
				{"empty id", func(r *jobs.DecideRequest) { r.JobID = "" }, "job.job_id"},
				{"id charset", func(r *jobs.DecideRequest) { r.JobID = "a/b" }, "job.job_id"},
				{"id length", func(r *jobs.DecideRequest) { r.JobID = long }, "job.job_id"},
				{"no topic", func(r *jobs.DecideRequest) { r.Topic = "" }, "job.topic"},
				{"wildcard topic", func(r *jobs.DecideRequest) { r.Topic = "finance.*" }, "job.topic"},
				{"no actor", func(r *jobs.DecideRequest) { r.Actor = "" }, "job.actor"},
				{"control in actor", func(r *jobs.DecideRequest) { r.Actor = "a\nb" }, "job.actor"},
				{"actor length", func(r *jobs.DecideRequest) { r.Actor = strings.Repeat("é", 257) }, "job.actor"},
				{"list label", func(r *jobs.DecideRequest) { r.Labels = map[string]any{"env": "dev", "tags": []any{"a"}} }, "job.labels.tags"},
				{"null label", func(r *jobs.DecideRequest) { r.Labels = map[string]any{"env": "dev", "x": nil} }, "job.labels.x"},
				{"label schema", func(r *jobs.DecideRequest) { r.Labels = map[string]any{"env": "moon"} }, "job.labels.env"},
				{"required label", func(r *jobs.DecideRequest) { r.Labels = nil }, "job.labels.env"},
				{"payload not an object", func(r *jobs.DecideRequest) { r.Payload = []byte(`[1]`) }, "job.payload"},
				{"payload not json", func(r *jobs.DecideRequest) { r.Payload = []byte(`{"a":`) }, "job.payload.a"},
				{"inexact number", func(r *jobs.DecideRequest) { r.Payload = []byte(`{"amount": 9007199254740993}`) }, "job.payload.amount"},
				{"payload size", func(r *jobs.DecideRequest) { r.Payload = big }, "job.payload"},
				{"trace id length", func(r *jobs.DecideRequest) { r.TraceID = long }, "job.trace_id"},
			} {
				req := payment.request(newID("bad"))
				c.edit(&req)
				_, err := e.svc.Decide(ctx, decider, req)
				if e, ok := jobs.AsError(err); !ok || e.Field != c.field {
					t.Fatalf("%s: err = %v, want field %s", c.name, err, c.field)
				}
				wantField(t, err, c.field)
				if req.JobID != "" && len(req.JobID) <= 128 && !strings.Contains(req.JobID, "/") {
					_, err := e.svc.GetJob(ctx, auditor, req.JobID)
					wantErr(t, err, jobs.CodeNotFound, jobs.ReasonNotFound)
				}
			}
			_, err := e.svc.Decide(ctx, jobs.Principal{}, payment.request(newID("anon")))
			wantField(t, err, "principal")
		})

		t.Run("evaluate writes nothing", func(t *testing.T) {
			req := payment.request(newID("eval"))
			res, err := e.svc.Evaluate(ctx, req, "")
			wantNoErr(t, err)
			if res.Result.RuleID != "finance-prod" || res.Snapshot != e.snap || !strings.HasPrefix(res.JobHash, "sha256:") {
				t.Fatalf("%+v", res)
			}
			named, err := e.svc.Evaluate(ctx, req, e.snap)
			wantNoErr(t, err)
			if named.Result.RuleID != res.Result.RuleID || named.JobHash != res.JobHash {
				t.Fatalf("named snapshot: %+v", named)
			}
			_, err = e.svc.Evaluate(ctx, req, "snap_0000000000000000")
			wantErr(t, err, jobs.CodeNotFound, jobs.ReasonNotFound)
			req.Labels = map[string]any{"env": "moon"}
			_, err = e.svc.Evaluate(ctx, req, e.snap)
			wantField(t, err, "job.labels.env")
			_, err = e.svc.GetJob(ctx, auditor, req.JobID)
			wantErr(t, err, jobs.CodeNotFound, jobs.ReasonNotFound)
		})
	})
}

func TestDecideWithoutActiveSnapshot(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, st store.Store, m commitMode) {
		t.Parallel()
		e := m.env(t, st, "")
		_, err := e.svc.Decide(context.Background(), decider, payment.request(newID("none")))
		wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonNoActiveSnapshot)
		_, err = e.svc.Evaluate(context.Background(), payment.request(newID("none")), "")
		wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonNoActiveSnapshot)
		if evs := e.events(t, evidence.PolicyChain); len(evs) != 0 {
			t.Fatalf("events: %s", kinds(evs))
		}
	})
}

// sameJob compares jobs field by field (slices by content).
func sameJob(a, b store.Job) bool {
	return a.ID == b.ID && a.Topic == b.Topic && a.Actor == b.Actor && string(a.Labels) == string(b.Labels) &&
		string(a.Payload) == string(b.Payload) && a.Hash == b.Hash && a.SubmittedBy == b.SubmittedBy &&
		a.TraceID == b.TraceID && a.Status == b.Status && a.Decision == b.Decision &&
		a.ApprovalRequired == b.ApprovalRequired && a.RuleID == b.RuleID && a.Reason == b.Reason &&
		slices.Equal(a.MatchedRules, b.MatchedRules) && a.Snapshot == b.Snapshot &&
		slices.Equal(a.ApprovalRoles, b.ApprovalRoles) && a.Quorum == b.Quorum && a.ExpiresAt == b.ExpiresAt &&
		a.Revision == b.Revision && a.ApprovedBy == b.ApprovedBy && a.ApprovedRole == b.ApprovedRole &&
		a.ApprovedAt == b.ApprovedAt && a.Attempt == b.Attempt && a.Outcome == b.Outcome &&
		a.DecidedAt == b.DecidedAt && a.PublishedAt == b.PublishedAt && a.UpdatedAt == b.UpdatedAt
}
