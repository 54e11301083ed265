package storetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/agate-pdp/agate/store"
)

func testJobInsertGet(t *testing.T, s store.Store) {
	want := fullJob("job_4ab2", base)
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for _, lock := range []bool{false, true} {
			if _, err := tx.GetJob(ctx, want.ID, lock); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetJob(forUpdate=%v) before insert: %v, want ErrNotFound", lock, err)
			}
		}
		return tx.InsertJob(ctx, want)
	})
	// A second insert with the same id is refused and changes nothing, and the
	// transaction stays usable after the refusal.
	other := fullJob(want.ID, base+99)
	other.Topic, other.Status = "other.topic", store.StatusDenied
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		if err := tx.InsertJob(ctx, other); !errors.Is(err, store.ErrConflict) {
			t.Errorf("InsertJob with an existing id: %v, want ErrConflict", err)
		}
		got, err := tx.GetJob(ctx, want.ID, true)
		if err != nil {
			return err
		}
		sameJob(t, got, want)
		return nil
	})
	sameJob(t, getJob(t, s, want.ID), want)

	// Zero values round-trip too.
	minimal := store.Job{ID: "job_min", Status: store.StatusAllowed}
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.InsertJob(ctx, minimal) })
	sameJob(t, getJob(t, s, minimal.ID), minimal)
}

func testJobUpdate(t *testing.T, s store.Store) {
	orig := fullJob("job_upd", base)
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.InsertJob(ctx, orig) })

	// Every mutable field changes; the immutable ones are set to other values, which
	// UpdateJob must ignore.
	upd := store.Job{
		ID: orig.ID, Topic: "x", Actor: "x", Labels: []byte(`{"x":1}`), Payload: []byte(`{"x":1}`),
		Hash: "sha256:x", SubmittedBy: "x",
		TraceID: "trc_new", Status: store.StatusApprovedAndPublished, Decision: "allow",
		ApprovalRequired: false, RuleID: "default", Reason: "no rule matched",
		MatchedRules: []string{"r1"}, Snapshot: "snap_1111111111111111", ApprovalRoles: nil,
		Quorum: 1, ExpiresAt: base + 10, Revision: 2, ApprovedBy: "bob@example.com",
		ApprovedRole: "finance-approver", ApprovedAt: base + 11, Attempt: 4, Outcome: "failed",
		DecidedAt: base + 12, PublishedAt: base + 13, UpdatedAt: base + 14,
	}
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.UpdateJob(ctx, upd) })
	want := upd
	want.Topic, want.Actor, want.Labels, want.Payload = orig.Topic, orig.Actor, orig.Labels, orig.Payload
	want.Hash, want.SubmittedBy = orig.Hash, orig.SubmittedBy
	sameJob(t, getJob(t, s, orig.ID), want)

	// And back to zero values.
	zero := store.Job{ID: orig.ID}
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.UpdateJob(ctx, zero) })
	want = zero
	want.Topic, want.Actor, want.Labels, want.Payload = orig.Topic, orig.Actor, orig.Labels, orig.Payload
	want.Hash, want.SubmittedBy = orig.Hash, orig.SubmittedBy
	sameJob(t, getJob(t, s, orig.ID), want)

	err := s.ReadWrite(t.Context(), func(ctx context.Context, tx store.Tx) error {
		return tx.UpdateJob(ctx, store.Job{ID: "job_missing", Status: store.StatusDenied})
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateJob of a missing job: %v, want ErrNotFound", err)
	}
}

func testJobListCount(t *testing.T, s store.Store) {
	statuses := []store.Status{store.StatusPendingApproval, store.StatusApproved, store.StatusAllowed}
	var all []store.Job
	for i := range 13 {
		j := fullJob(fmt.Sprintf("job_%02d", (i*5)%13), base+int64(i/3)) // ties on DecidedAt
		j.Status = statuses[i%3]
		j.Topic = []string{"a.b", "c.d"}[i%2]
		j.Actor = []string{"agent-1", "agent-2", "agent-3"}[i%3]
		j.RuleID = []string{"r1", "r2"}[i%2]
		j.Snapshot = []string{"snap_a", "snap_b", "snap_c"}[i%3]
		j.UpdatedAt = base + int64(13-i)
		all = append(all, j)
	}
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for _, j := range all {
			if err := tx.InsertJob(ctx, j); err != nil {
				return err
			}
		}
		return nil
	})
	queries := []store.JobQuery{
		{},
		{Statuses: []store.Status{store.StatusPendingApproval}},
		{Statuses: []store.Status{store.StatusPendingApproval, store.StatusApproved}},
		{Statuses: []store.Status{store.StatusExpired}},
		{Topic: "a.b"},
		{Actor: "agent-2"},
		{RuleID: "r2"},
		{Snapshot: "snap_c"},
		{DecidedBefore: base + 2},
		{UpdatedBefore: base + 5},
		{Statuses: []store.Status{store.StatusAllowed}, Topic: "c.d", DecidedBefore: base + 4},
		{AfterDecidedAt: base + 1, AfterID: all[4].ID},
	}
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		for _, q := range queries {
			want := filterJobs(all, q)
			got, err := tx.ListJobs(ctx, q)
			if err != nil {
				return err
			}
			if !slices.Equal(jobIDs(got), jobIDs(want)) {
				t.Errorf("ListJobs(%+v):\n got %v\nwant %v", q, jobIDs(got), jobIDs(want))
			}
			// Paging with the cursor yields the same list.
			var paged []store.Job
			pq := q
			pq.Limit = 2
			for range len(all) + 1 {
				page, err := tx.ListJobs(ctx, pq)
				if err != nil {
					return err
				}
				if len(page) > 2 {
					t.Fatalf("page of %d, limit 2", len(page))
				}
				if len(page) == 0 {
					break
				}
				paged = append(paged, page...)
				last := page[len(page)-1]
				pq.AfterDecidedAt, pq.AfterID = last.DecidedAt, last.ID
			}
			if !slices.Equal(jobIDs(paged), jobIDs(want)) {
				t.Errorf("paged ListJobs(%+v):\n got %v\nwant %v", q, jobIDs(paged), jobIDs(want))
			}
		}
		for _, c := range []struct {
			statuses    []store.Status
			notSnapshot string
		}{
			{[]store.Status{store.StatusPendingApproval, store.StatusApproved}, "snap_a"},
			{[]store.Status{store.StatusPendingApproval}, "snap_none"},
			{[]store.Status{store.StatusExpired}, ""},
			{nil, "snap_b"},
		} {
			want := 0
			for _, j := range all {
				if (len(c.statuses) == 0 || slices.Contains(c.statuses, j.Status)) && j.Snapshot != c.notSnapshot {
					want++
				}
			}
			got, err := tx.CountJobs(ctx, c.statuses, c.notSnapshot)
			if err != nil {
				return err
			}
			if got != want {
				t.Errorf("CountJobs(%v, not %q) = %d, want %d", c.statuses, c.notSnapshot, got, want)
			}
		}
		return nil
	})
}

// filterJobs is the reference ListJobs.
func filterJobs(all []store.Job, q store.JobQuery) []store.Job {
	var out []store.Job
	for _, j := range all {
		switch {
		case len(q.Statuses) > 0 && !slices.Contains(q.Statuses, j.Status),
			q.Topic != "" && j.Topic != q.Topic,
			q.Actor != "" && j.Actor != q.Actor,
			q.RuleID != "" && j.RuleID != q.RuleID,
			q.Snapshot != "" && j.Snapshot != q.Snapshot,
			q.DecidedBefore > 0 && j.DecidedAt >= q.DecidedBefore,
			q.UpdatedBefore > 0 && j.UpdatedAt >= q.UpdatedBefore,
			(q.AfterDecidedAt != 0 || q.AfterID != "") &&
				cmp.Or(cmp.Compare(j.DecidedAt, q.AfterDecidedAt), cmp.Compare(j.ID, q.AfterID)) <= 0:
			continue
		}
		out = append(out, j)
	}
	slices.SortFunc(out, func(a, b store.Job) int {
		return cmp.Or(cmp.Compare(a.DecidedAt, b.DecidedAt), cmp.Compare(a.ID, b.ID))
	})
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out
}

// testJobsDue: DueJobs finds exactly the jobs in a status whose deadline has passed,
// earliest deadline first, ties by id, and honours the limit; a job whose deadline is
// now is due, one a microsecond later is not, and a job without a deadline never is.
func testJobsDue(t *testing.T, s store.Store) {
	now := base + 100
	type row struct {
		id      string
		status  store.Status
		expires int64
		due     bool
	}
	rows := []row{
		{"job_due_b", store.StatusPendingApproval, base + 10, true},
		{"job_due_a", store.StatusPendingApproval, base + 10, true}, // tie: by id
		{"job_due_now", store.StatusPendingApproval, now, true},
		{"job_due_early", store.StatusPendingApproval, base + 1, true},
		{"job_due_later", store.StatusPendingApproval, now + 1, false},
		{"job_due_none", store.StatusPendingApproval, 0, false},
		{"job_due_approved", store.StatusApproved, base + 1, false},
		{"job_due_expired", store.StatusExpired, base + 1, false},
	}
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for _, r := range rows {
			j := fullJob(r.id, base)
			j.Status, j.ExpiresAt = r.status, r.expires
			if err := tx.InsertJob(ctx, j); err != nil {
				return err
			}
		}
		return nil
	})
	want := []string{"job_due_early", "job_due_a", "job_due_b", "job_due_now"}
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		for _, c := range []struct {
			limit int
			want  []string
		}{{0, want}, {10, want}, {2, want[:2]}, {1, want[:1]}} {
			got, err := tx.DueJobs(ctx, store.StatusPendingApproval, now, c.limit)
			if err != nil {
				return err
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("DueJobs(pending, now, limit %d) = %v, want %v", c.limit, got, c.want)
			}
		}
		got, err := tx.DueJobs(ctx, store.StatusApproved, now, 0)
		if err != nil {
			return err
		}
		if !slices.Equal(got, []string{"job_due_approved"}) {
			t.Errorf("DueJobs(approved) = %v, want [job_due_approved]", got)
		}
		// A status without a meaningful deadline is outside the index, and still answered.
		got, err = tx.DueJobs(ctx, store.StatusExpired, now, 0)
		if err != nil {
			return err
		}
		if !slices.Equal(got, []string{"job_due_expired"}) {
			t.Errorf("DueJobs(expired) = %v, want [job_due_expired]", got)
		}
		got, err = tx.DueJobs(ctx, store.StatusPendingApproval, base, 0)
		if err != nil || len(got) != 0 {
			t.Errorf("DueJobs before any deadline = %v, %v; want none", got, err)
		}
		return nil
	})
}
