package jobs_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/store"
)

func TestApprove(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, st store.Store, m commitMode) {
		t.Parallel()
		ctx := context.Background()
		approve := func(e *env, p jobs.Principal, j store.Job) (jobs.ApproveResult, error) {
			return e.svc.Approve(ctx, p, jobs.ApproveRequest{JobID: j.ID, JobHash: j.Hash, Reason: "looks right"})
		}

		t.Run("quorum of one", func(t *testing.T) {
			e := m.env(t, st, testPolicy)
			j := e.decide(t, payment)
			e.clock.Advance(time.Minute)
			res, err := approve(e, alice, j)
			wantNoErr(t, err)
			at := t0.Add(time.Minute).UnixMicro()
			got := res.Job
			if res.AlreadyApproved || got.Status != store.StatusApproved || got.ApprovedBy != alice.ID ||
				got.ApprovedRole != "finance-approver" || got.ApprovedAt != at || got.UpdatedAt != at ||
				len(res.Approvals) != 1 || res.Approval.Approver != alice.ID || res.Approval.Reason != "looks right" {
				t.Fatalf("%+v", res)
			}
			if stored := e.job(t, j.ID); !sameJob(stored, got) {
				t.Fatalf("stored %+v", stored)
			}
			ev := e.wantKinds(t, j.ID, "decision,approval")[1]
			if ev.ApprovedBy != alice.ID || ev.ApprovedRole != "finance-approver" || ev.ApprovedAt != at ||
				ev.Status != "approved" || ev.PolicySnapshot != e.snap || ev.JobHash != j.Hash ||
				ev.Principal != alice.ID || ev.Reason != "looks right" || !ev.ApprovalRequired {
				t.Fatalf("approval event %+v", ev)
			}

			// The approver's own repeat changes nothing and is counted as already_approved;
			// another eligible approver's call is no approval of theirs: ALREADY_APPROVED,
			// a refusal on the job's chain, not a repeat.
			again, err := approve(e, alice, j)
			wantNoErr(t, err)
			if !again.AlreadyApproved || again.Approval.Approver != alice.ID || !sameJob(again.Job, got) || len(again.Approvals) != 1 {
				t.Fatalf("repeat: %+v", again)
			}
			_, err = approve(e, bob, j)
			wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonAlreadyApproved)
			evs := e.wantKinds(t, j.ID, "decision,approval,approval+,refusal:ALREADY_APPROVED")
			if evs[2].Principal != alice.ID || evs[2].ApprovedBy != alice.ID || evs[3].Principal != bob.ID {
				t.Fatalf("repeat events %+v", evs[2:])
			}
			if stored := e.job(t, j.ID); !sameJob(stored, got) {
				t.Fatalf("stored %+v", stored)
			}
		})

		t.Run("one person, two spellings", func(t *testing.T) {
			// The quorum counts people: alice under another spelling is alice again.
			e := m.env(t, st, testPolicy)
			j := e.decide(t, transfer)
			_, err := approve(e, alice, j)
			wantNoErr(t, err)
			shouting := jobs.Principal{ID: "ALICE@EXAMPLE.COM", Roles: []string{"finance-approver"}}
			again, err := approve(e, shouting, j)
			wantNoErr(t, err)
			if !again.AlreadyApproved || again.Job.Status != store.StatusPendingApproval || len(again.Approvals) != 1 {
				t.Fatalf("second spelling: %+v", again)
			}
			e.wantKinds(t, j.ID, "decision,approval,approval+")
		})

		t.Run("quorum of two distinct approvers", func(t *testing.T) {
			e := m.env(t, st, testPolicy)
			j := e.decide(t, transfer)
			first, err := approve(e, alice, j)
			wantNoErr(t, err)
			if first.Job.Status != store.StatusPendingApproval || first.Job.ApprovedBy != "" || len(first.Approvals) != 1 {
				t.Fatalf("first: %+v", first)
			}
			same, err := approve(e, alice, j)
			wantNoErr(t, err)
			if !same.AlreadyApproved || same.Job.Status != store.StatusPendingApproval || len(same.Approvals) != 1 {
				t.Fatalf("same approver twice: %+v", same)
			}
			e.clock.Advance(time.Minute)
			second, err := approve(e, carol, j)
			wantNoErr(t, err)
			if second.Job.Status != store.StatusApproved || second.Job.ApprovedBy != carol.ID ||
				second.Job.ApprovedRole != "finance-approver" || len(second.Approvals) != 2 {
				t.Fatalf("second: %+v", second)
			}
			v, err := e.svc.GetJob(ctx, auditor, j.ID)
			wantNoErr(t, err)
			if len(v.Approvals) != 2 || v.Approvals[0].Approver != alice.ID || v.Approvals[1].Approver != carol.ID {
				t.Fatalf("approvals %+v", v.Approvals)
			}
			evs := e.wantKinds(t, j.ID, "decision,approval,approval+,approval")
			if evs[1].Status != "pending_approval" || evs[3].Status != "approved" || evs[3].ApprovedBy != carol.ID {
				t.Fatalf("events %+v", evs)
			}
		})

		t.Run("refusals", func(t *testing.T) {
			e := m.env(t, st, testPolicy)
			self := jobs.Principal{ID: actor, Roles: []string{"finance-approver"}}
			submitter := jobs.Principal{ID: decider.ID, Roles: []string{"admin"}}
			for _, c := range []struct {
				name   string
				p      jobs.Principal
				code   jobs.Code
				reason string
			}{
				{"the actor", self, jobs.CodePermissionDenied, jobs.ReasonSelfApproval},
				{"the actor, shouting", jobs.Principal{ID: "AGENT-7", Roles: []string{"finance-approver"}}, jobs.CodePermissionDenied, jobs.ReasonSelfApproval},
				{"the submitter", submitter, jobs.CodePermissionDenied, jobs.ReasonSelfApproval},
				{"the submitter as a service", decider, jobs.CodePermissionDenied, jobs.ReasonSelfApproval},
				{"the actor without an approver role", jobs.Principal{ID: actor, Roles: []string{"audit"}}, jobs.CodePermissionDenied, jobs.ReasonSelfApproval},
			} {
				j := e.decide(t, payment)
				_, err := approve(e, c.p, j)
				wantErr(t, err, c.code, c.reason)
				if got := e.job(t, j.ID); !sameJob(got, j) {
					t.Fatalf("%s: job changed: %+v", c.name, got)
				}
				ev := e.wantKinds(t, j.ID, "decision,refusal:"+c.reason)[1]
				if ev.Principal != c.p.ID || ev.Status != "pending_approval" || ev.Reason == "" {
					t.Fatalf("%s: refusal event %+v", c.name, ev)
				}
			}
		})

		t.Run("callers without standing learn nothing and change nothing", func(t *testing.T) {
			e := m.env(t, st, testPolicy)
			serviceApprover := jobs.Principal{ID: "svc-approver", Roles: []string{"finance-approver", "dispatch"}}
			for _, c := range []struct {
				name string
				p    jobs.Principal
			}{
				{"another service", mallory},
				{"the dispatcher", dispatcher},
				{"an approver holding a service role", serviceApprover},
				{"an approver of another topic", jobs.Principal{ID: "tess@example.com", Roles: []string{"treasurer"}}},
				{"a principal without roles", jobs.Principal{ID: "nobody@example.com"}},
				{"the actor without roles", jobs.Principal{ID: actor}},
				{"an operator", operator},
			} {
				for _, state := range []string{"pending", "approved", "expired"} {
					var j store.Job
					switch state {
					case "pending":
						j = e.decide(t, payment)
					case "approved":
						j = e.approved(t)
					case "expired":
						j = e.decide(t, payment)
						e.clock.Advance(25 * time.Hour) // past its ttl, but nobody with standing looked
					}
					before := e.events(t, j.ID)
					mine := len(e.events(t, principalChain(c.p)))
					for _, hash := range []string{j.Hash, "sha256:" + strings.Repeat("0", 64)} {
						_, err := e.svc.Approve(ctx, c.p, jobs.ApproveRequest{JobID: j.ID, JobHash: hash})
						missing := wantErr(t, err, jobs.CodeNotFound, jobs.ReasonNotFound)
						_, err = e.svc.Approve(ctx, c.p, jobs.ApproveRequest{JobID: "no-such-job", JobHash: hash})
						absent := wantErr(t, err, jobs.CodeNotFound, jobs.ReasonNotFound)
						if missing.Msg != strings.ReplaceAll(absent.Msg, "no-such-job", j.ID) || len(missing.Meta) != 0 {
							t.Fatalf("%s, %s: %q / %q %v: the answers differ", c.name, state, missing.Msg, absent.Msg, missing.Meta)
						}
						_, err = e.svc.Reject(ctx, c.p, jobs.RejectRequest{JobID: j.ID, JobHash: hash, Reason: "no"})
						wantErr(t, err, jobs.CodeNotFound, jobs.ReasonNotFound)
					}
					if got := e.job(t, j.ID); !sameJob(got, j) {
						t.Fatalf("%s, %s: job changed: %+v", c.name, state, got)
					}
					if after := e.events(t, j.ID); len(after) != len(before) {
						t.Fatalf("%s, %s: the job's chain grew: %s", c.name, state, kinds(after))
					}
					evs := e.events(t, principalChain(c.p))
					if len(evs) != mine+6 {
						t.Fatalf("%s, %s: %d events on the caller's chain, want %d", c.name, state, len(evs), mine+6)
					}
					for _, ev := range evs[mine:] {
						if ev.Kind != evidence.KindRefusal || ev.Conflict != jobs.EvidenceNoStanding || ev.Principal != c.p.ID ||
							!strings.Contains(ev.Reason, "of job ") {
							t.Fatalf("%s: caller's chain event %+v", c.name, ev)
						}
					}
				}
			}
		})

		t.Run("hash mismatch", func(t *testing.T) {
			e := m.env(t, st, testPolicy)
			j := e.decide(t, payment)
			_, err := e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: j.ID, JobHash: "sha256:" + strings.Repeat("0", 64)})
			ee := wantErr(t, err, jobs.CodeAborted, jobs.ReasonJobHashMismatch)
			if ee.Meta["expected_job_hash"] != j.Hash {
				t.Fatalf("meta %v", ee.Meta)
			}
			if got := e.job(t, j.ID); !sameJob(got, j) {
				t.Fatalf("job changed: %+v", got)
			}
			ev := e.wantKinds(t, j.ID, "decision,conflict:JOB_HASH_MISMATCH")[1]
			if ev.PresentedHash != "sha256:"+strings.Repeat("0", 64) || ev.JobHash != j.Hash {
				t.Fatalf("conflict event %+v", ev)
			}
		})

		t.Run("after reject", func(t *testing.T) {
			e := m.env(t, st, testPolicy)
			j := e.decide(t, payment)
			_, err := e.svc.Reject(ctx, bob, jobs.RejectRequest{JobID: j.ID, JobHash: j.Hash, Reason: "wrong invoice"})
			wantNoErr(t, err)
			_, err = approve(e, alice, j)
			wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonAlreadyRejected)
			e.wantKinds(t, j.ID, "decision,rejection,refusal:ALREADY_REJECTED")
		})

		t.Run("not pending", func(t *testing.T) {
			e := m.env(t, st, testPolicy)
			// An approver has no standing on a job that needs no approval.
			for _, s := range []jobSpec{report, export} {
				j := e.decide(t, s)
				_, err := approve(e, alice, j)
				wantErr(t, err, jobs.CodeNotFound, jobs.ReasonNotFound)
				e.wantKinds(t, j.ID, "decision")
			}
			pub := e.publishedJob(t, report)
			_, err := approve(e, alice, pub)
			wantErr(t, err, jobs.CodeNotFound, jobs.ReasonNotFound)
			cancelled := e.decide(t, payment)
			_, err = e.svc.Cancel(ctx, decider, jobs.CancelRequest{JobID: cancelled.ID, Reason: "withdrawn"})
			wantNoErr(t, err)
			_, err = approve(e, alice, cancelled)
			if ee := wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonNotPending); ee.Meta["status"] != "cancelled" {
				t.Fatalf("meta %v", ee.Meta)
			}
			e.wantKinds(t, cancelled.ID, "decision,cancel,refusal:NOT_PENDING")
		})

		t.Run("expired", func(t *testing.T) {
			e := m.env(t, st, testPolicy)
			j := e.decide(t, payment)
			e.clock.Advance(24 * time.Hour) // the deadline itself is too late
			_, err := approve(e, alice, j)
			wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonApprovalExpired)
			if got := e.job(t, j.ID); got.Status != store.StatusExpired {
				t.Fatalf("status %s", got.Status)
			}
			ev := e.wantKinds(t, j.ID, "decision,expiry")[1]
			if ev.Status != "expired" || ev.Principal != alice.ID {
				t.Fatalf("expiry event %+v", ev)
			}
			_, err = approve(e, alice, j)
			wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonNotPending)
		})

		t.Run("bad input", func(t *testing.T) {
			e := m.env(t, st, testPolicy)
			j := e.decide(t, payment)
			alice := jobs.Principal{ID: "input-checker@example.com", Roles: alice.Roles}
			_, err := e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: j.ID})
			wantField(t, err, "job_hash")
			_, err = e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: j.ID, JobHash: j.Hash, Reason: strings.Repeat("r", 513)})
			wantField(t, err, "reason")
			_, err = e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: "", JobHash: j.Hash})
			wantField(t, err, "job_id")
			for _, bad := range []string{"abc", "sha256:00", "sha256:" + strings.Repeat("A", 64), "SHA256:" + strings.Repeat("0", 64),
				"sha256:" + strings.Repeat("0", 65), strings.Repeat("0", 64), "sha256:" + strings.Repeat("g", 64)} {
				_, err = e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: j.ID, JobHash: bad})
				wantField(t, err, "job_hash")
			}
			_, err = e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: "missing", JobHash: j.Hash})
			wantErr(t, err, jobs.CodeNotFound, jobs.ReasonNotFound)
			e.wantKinds(t, j.ID, "decision")
			e.wantKinds(t, principalChain(alice), "refusal:NO_STANDING") // the missing job only: bad input writes nothing
		})
	})
}

func TestReject(t *testing.T) {
	t.Parallel()
	forEachMode(t, func(t *testing.T, st store.Store, m commitMode) {
		t.Parallel()
		ctx := context.Background()
		reject := func(e *env, p jobs.Principal, j store.Job) (jobs.RejectResult, error) {
			return e.svc.Reject(ctx, p, jobs.RejectRequest{JobID: j.ID, JobHash: j.Hash, Reason: "wrong invoice"})
		}

		t.Run("veto and repeat", func(t *testing.T) {
			e := m.env(t, st, testPolicy)
			j := e.decide(t, transfer)
			_, err := e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: j.ID, JobHash: j.Hash})
			wantNoErr(t, err)
			e.clock.Advance(time.Second)
			res, err := reject(e, carol, j)
			wantNoErr(t, err)
			at := t0.Add(time.Second).UnixMicro()
			if res.AlreadyRejected || res.Job.Status != store.StatusRejected || res.RejectedBy != carol.ID ||
				res.RejectedRole != "finance-approver" || res.RejectedAt != at {
				t.Fatalf("%+v", res)
			}
			e.clock.Advance(time.Second)
			again, err := reject(e, bob, j)
			wantNoErr(t, err)
			if !again.AlreadyRejected || again.RejectedBy != carol.ID || again.RejectedAt != at || again.Job.Status != store.StatusRejected {
				t.Fatalf("repeat %+v", again)
			}
			evs := e.wantKinds(t, j.ID, "decision,approval,rejection,rejection+")
			if evs[2].Reason != "wrong invoice" || evs[2].Status != "rejected" || evs[2].Principal != carol.ID || evs[3].Principal != bob.ID {
				t.Fatalf("events %+v", evs[2:])
			}
		})

		t.Run("the actor may veto", func(t *testing.T) {
			e := m.env(t, st, testPolicy)
			j := e.decide(t, payment)
			_, err := reject(e, jobs.Principal{ID: actor, Roles: []string{"admin"}}, j)
			wantNoErr(t, err)
		})

		t.Run("after approval", func(t *testing.T) {
			e := m.env(t, st, testPolicy)
			j := e.approved(t)
			_, err := reject(e, bob, j)
			wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonAlreadyApproved)
			if got := e.job(t, j.ID); got.Status != store.StatusApproved {
				t.Fatalf("status %s", got.Status)
			}
			e.wantKinds(t, j.ID, "decision,approval,refusal:ALREADY_APPROVED")
		})

		t.Run("refusals and failures", func(t *testing.T) {
			e := m.env(t, st, testPolicy)
			j := e.decide(t, payment)
			outsider := jobs.Principal{ID: "svc-reject-outsider", Roles: []string{"decide"}}
			_, err := reject(e, outsider, j)
			wantErr(t, err, jobs.CodeNotFound, jobs.ReasonNotFound) // no standing: on the outsider's chain
			_, err = reject(e, jobs.Principal{ID: actor, Roles: []string{"audit"}}, j)
			wantErr(t, err, jobs.CodePermissionDenied, jobs.ReasonRoleNotAllowed) // standing, no role
			_, err = e.svc.Reject(ctx, bob, jobs.RejectRequest{JobID: j.ID, JobHash: "sha256:" + strings.Repeat("0", 64), Reason: "x"})
			wantErr(t, err, jobs.CodeAborted, jobs.ReasonJobHashMismatch)
			_, err = e.svc.Reject(ctx, bob, jobs.RejectRequest{JobID: j.ID, JobHash: j.Hash})
			wantField(t, err, "reason")
			e.wantKinds(t, j.ID, "decision,refusal:ROLE_NOT_ALLOWED,conflict:JOB_HASH_MISMATCH")
			e.wantKinds(t, principalChain(outsider), "refusal:NO_STANDING")

			allowed := e.decide(t, report) // needs no approver: an approver has no standing on it
			_, err = reject(e, bob, allowed)
			wantErr(t, err, jobs.CodeNotFound, jobs.ReasonNotFound)

			e.clock.Advance(25 * time.Hour)
			_, err = reject(e, bob, j)
			wantErr(t, err, jobs.CodeFailedPrecondition, jobs.ReasonApprovalExpired)
			e.wantKinds(t, j.ID, "decision,refusal:ROLE_NOT_ALLOWED,conflict:JOB_HASH_MISMATCH,expiry")
		})
	})
}
