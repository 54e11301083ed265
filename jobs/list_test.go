package jobs_test

import (
	"cmp"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/storetest"
)

func TestListPending(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		ctx := context.Background()
		e := newEnv(t, st, testPolicy)
		var payments, transfers []string
		for range 3 {
			payments = append(payments, e.decide(t, payment).ID)
		}
		for range 2 {
			transfers = append(transfers, e.decide(t, transfer).ID)
		}
		other := payment.request(newID("other"))
		other.Actor = "agent-9"
		_, err := e.svc.Decide(ctx, decider, other)
		wantNoErr(t, err)
		payments = append(payments, other.JobID)
		e.decide(t, report)
		e.clock.Advance(30 * time.Minute)
		for range 2 {
			payments = append(payments, e.decide(t, payment).ID)
		}
		tr := e.job(t, transfers[0])
		_, err = e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: tr.ID, JobHash: tr.Hash})
		wantNoErr(t, err)

		all := append(slices.Clone(payments), transfers...)
		treasurer := jobs.Principal{ID: "tess@example.com", Roles: []string{"treasurer", "nobody"}}
		rootApprover := jobs.Principal{ID: "root@example.com", Roles: []string{"admin"}}
		// A service role, even beside an approver role, approves nothing and sees nothing.
		serviceApprover := jobs.Principal{ID: "svc-approver", Roles: []string{"finance-approver", "decide"}}
		noRoles := jobs.Principal{ID: "nobody@example.com"}
		for _, c := range []struct {
			name string
			p    jobs.Principal
			q    jobs.PendingQuery
			want []string
		}{
			{"all", auditor, jobs.PendingQuery{}, all},
			{"exact topic", auditor, jobs.PendingQuery{Topic: transfer.topic}, transfers},
			{"pattern >", auditor, jobs.PendingQuery{Topic: "finance.>"}, all},
			{"pattern * too short", auditor, jobs.PendingQuery{Topic: "finance.*"}, nil},
			{"pattern *", auditor, jobs.PendingQuery{Topic: "finance.*.execute"}, payments},
			{"actor", auditor, jobs.PendingQuery{Actor: "agent-9"}, []string{other.JobID}},
			{"rule", auditor, jobs.PendingQuery{RuleID: "transfer-quorum"}, transfers},
			{"roles", treasurer, jobs.PendingQuery{}, transfers},
			{"admin role", rootApprover, jobs.PendingQuery{}, payments},
			{"approver of both", alice, jobs.PendingQuery{}, all},
			{"no roles", noRoles, jobs.PendingQuery{}, nil},
			{"service role", serviceApprover, jobs.PendingQuery{}, nil},
			{"dispatcher", dispatcher, jobs.PendingQuery{}, nil},
			{"snapshot", auditor, jobs.PendingQuery{Snapshot: e.snap}, all},
			{"other snapshot", auditor, jobs.PendingQuery{Snapshot: "snap_0000000000000000"}, nil},
		} {
			for _, size := range []int{0, 1, 3} {
				c.q.PageSize = size
				got := listAllAs(t, e, c.p, c.q)
				if !sameSet(ids(got), c.want) {
					t.Fatalf("%s, page size %d: got %v, want %v", c.name, size, ids(got), c.want)
				}
				if !slices.IsSortedFunc(got, func(a, b jobs.JobView) int { return cmp.Compare(a.Job.DecidedAt, b.Job.DecidedAt) }) {
					t.Fatalf("%s: not oldest decision first: %v", c.name, ids(got))
				}
			}
		}
		withApproval := listAll(t, e, jobs.PendingQuery{Topic: transfer.topic})
		for _, v := range withApproval {
			if n := len(v.Approvals); (v.Job.ID == tr.ID) != (n == 1) {
				t.Fatalf("%s has %d approvals", v.Job.ID, n)
			}
		}

		// The transfers' one-hour ttl passes: they drop out and become expired.
		e.clock.Advance(31 * time.Minute)
		if got := listAll(t, e, jobs.PendingQuery{PageSize: 2}); !sameSet(ids(got), payments) {
			t.Fatalf("after the ttl: %v", ids(got))
		}
		for _, id := range transfers {
			if got := e.job(t, id); got.Status != store.StatusExpired {
				t.Fatalf("%s: %s", id, got.Status)
			}
			evs := e.events(t, id)
			if last := evs[len(evs)-1]; last.Kind != "expiry" || last.Principal != jobs.SystemPrincipal {
				t.Fatalf("%s: %s", id, kinds(evs))
			}
		}

		_, _, err = e.svc.ListPending(ctx, auditor, jobs.PendingQuery{PageToken: "%%%"})
		wantField(t, err, "page_token")
		_, _, err = e.svc.ListPending(ctx, auditor, jobs.PendingQuery{Topic: "fin*.x"})
		wantField(t, err, "topic")
		_, _, err = e.svc.ListPending(ctx, auditor, jobs.PendingQuery{PageSize: -1})
		wantField(t, err, "page_size")
	})
}

func listAll(t *testing.T, e *env, q jobs.PendingQuery) []jobs.JobView {
	t.Helper()
	return listAllAs(t, e, auditor, q)
}

func listAllAs(t *testing.T, e *env, p jobs.Principal, q jobs.PendingQuery) []jobs.JobView {
	t.Helper()
	var out []jobs.JobView
	for range 100 {
		page, next, err := e.svc.ListPending(context.Background(), p, q)
		wantNoErr(t, err)
		if q.PageSize > 0 && len(page) > q.PageSize {
			t.Fatalf("page of %d, size %d", len(page), q.PageSize)
		}
		out = append(out, page...)
		if next == "" {
			return out
		}
		q.PageToken = next
	}
	t.Fatal("pagination does not end")
	return nil
}

func TestListReplayable(t *testing.T) {
	t.Parallel()
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		ctx := context.Background()
		e := newEnv(t, st, testPolicy)
		approved := e.approved(t)
		allowed := e.decide(t, report)
		pubApproved := e.publishedJob(t, payment)
		pubAllowed := e.publishedJob(t, report)
		done := e.publishedJob(t, report)
		_, err := e.svc.ReportOutcome(ctx, dispatcher, jobs.OutcomeRequest{JobID: done.ID, Attempt: 1, Succeeded: true})
		wantNoErr(t, err)
		e.decide(t, payment)
		e.decide(t, export)
		e.clock.Advance(10 * time.Minute)

		list := func(older time.Duration, size int) []string {
			var out []string
			q := jobs.ReplayableQuery{OlderThan: older, PageSize: size}
			for range 20 {
				page, next, err := e.svc.ListReplayable(ctx, dispatcher, q)
				wantNoErr(t, err)
				for _, j := range page {
					out = append(out, j.ID)
				}
				if next == "" {
					return out
				}
				q.PageToken = next
			}
			t.Fatal("pagination does not end")
			return nil
		}
		four := []string{approved.ID, allowed.ID, pubApproved.ID, pubAllowed.ID}
		for _, c := range []struct {
			older time.Duration
			size  int
			want  []string
		}{
			{0, 0, four},
			{5 * time.Minute, 1, four},
			{time.Hour, 0, nil},
		} {
			if got := list(c.older, c.size); !sameSet(got, c.want) {
				t.Fatalf("older than %v: %v, want %v", c.older, got, c.want)
			}
		}
		_, err = e.svc.Replay(ctx, dispatcher, jobs.ReplayRequest{JobID: pubApproved.ID, JobHash: pubApproved.Hash,
			ExpectedAttempt: 1, ReasonCode: jobs.ReplayOutcomeTimeout, Reason: "no outcome in 10 minutes"})
		wantNoErr(t, err)
		if got := list(5*time.Minute, 2); !sameSet(got, []string{approved.ID, allowed.ID, pubAllowed.ID}) {
			t.Fatalf("after the replay: %v", got)
		}
		_, _, err = e.svc.ListReplayable(ctx, dispatcher, jobs.ReplayableQuery{OlderThan: -time.Second})
		wantField(t, err, "older_than")
	})
}

func ids(vs []jobs.JobView) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Job.ID)
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
