package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// The statements of a lifecycle batch: GetJobs, UpdateJobs, InsertApprovals.

func testJobsGetMany(t *testing.T, s store.Store) {
	var want []store.Job
	var events []evidence.Event
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for i := range 3 {
			j := fullJob(fmt.Sprintf("many_%d", i), base+int64(i))
			if err := tx.InsertJob(ctx, j); err != nil {
				return err
			}
			want = append(want, j)
		}
		for i := range 2 { // many_1 has a chain of two; the others none
			e := fullEvent("many_1", fmt.Sprintf("01J0000000000000000MANY%02d", i), evidence.KindApproval, base+int64(i))
			if err := appendSealed(ctx, tx, &e); err != nil {
				return err
			}
			events = append(events, e)
		}
		return nil
	})
	ids := []string{"many_2", "many_missing", "many_0", "many_1"}
	for _, forUpdate := range []bool{false, true} {
		write(t, s, func(ctx context.Context, tx store.Tx) error {
			got, err := tx.GetJobs(ctx, ids, forUpdate)
			if err != nil {
				return err
			}
			if g := jobIDs(got); !slices.Equal(g, []string{"many_0", "many_1", "many_2"}) {
				t.Fatalf("GetJobs(forUpdate=%v): %v, want the existing ones in id order", forUpdate, g)
			}
			for i := range got {
				sameJob(t, got[i], want[i])
			}
			if !forUpdate {
				return nil
			}
			// A locked job's chain head comes with it, as with GetJob.
			for id, h := range map[string]int64{"many_0": 0, "many_1": 2} {
				seq, hash, err := tx.ChainHead(ctx, id)
				wantHash := ""
				if h > 0 {
					wantHash = events[h-1].Hash
				}
				if err != nil || seq != h || hash != wantHash {
					t.Errorf("ChainHead(%s) after GetJobs: %d, %q, %v; want %d", id, seq, hash, err, h)
				}
			}
			return nil
		})
	}
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		if got, err := tx.GetJobs(ctx, nil, true); err != nil || len(got) != 0 {
			t.Errorf("GetJobs(nil) = %v, %v; want nothing", got, err)
		}
		if _, err := tx.GetJobs(ctx, []string{"many_0", "many_0"}, true); err == nil {
			t.Error("GetJobs with one id twice: no error")
		}
		return nil
	})
}

func testJobsUpdateMany(t *testing.T, s store.Store) {
	var js []store.Job
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for i := range 3 {
			j := fullJob(fmt.Sprintf("upd_%d", i), base+int64(i))
			if err := tx.InsertJob(ctx, j); err != nil {
				return err
			}
			js = append(js, j)
		}
		return nil
	})
	changed := slices.Clone(js[:2])
	for i := range changed {
		j := &changed[i]
		j.Status, j.ApprovedBy, j.ApprovedRole, j.ApprovedAt = store.StatusApproved, "carol@example.com", "admin", base+10
		j.Attempt, j.Outcome, j.UpdatedAt, j.Revision = 1, "", base+11, 2
		j.MatchedRules, j.ApprovalRoles = []string{"r1", "r2"}, []string{"admin"}
		// UpdateJobs leaves what UpdateJob leaves: identity and content.
		j.Topic, j.Payload = "changed.topic", []byte(`{"x":1}`)
	}
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		if err := tx.UpdateJobs(ctx, changed); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("UpdateJobs of jobs not locked: %v, want ErrNotFound", err)
		}
		if _, err := tx.GetJobs(ctx, []string{"upd_0", "upd_1"}, true); err != nil {
			return err
		}
		if err := tx.UpdateJobs(ctx, []store.Job{changed[0], changed[0]}); err == nil {
			t.Error("UpdateJobs with one job twice: no error")
		}
		missing := fullJob("upd_missing", base)
		if err := tx.UpdateJobs(ctx, []store.Job{missing}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("UpdateJobs of a missing job: %v, want ErrNotFound", err)
		}
		return tx.UpdateJobs(ctx, changed)
	})
	for i := range changed {
		want := changed[i]
		want.Topic, want.Payload = js[i].Topic, js[i].Payload
		sameJob(t, getJob(t, s, want.ID), want)
	}
	sameJob(t, getJob(t, s, "upd_2"), js[2])
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		if _, err := tx.GetJob(ctx, "upd_missing", false); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("UpdateJobs stored a job it was not given to update: %v", err)
		}
		return nil
	})
}

func testApprovalsInsertMany(t *testing.T, s store.Store) {
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for _, id := range []string{"appr_a", "appr_b"} {
			if err := tx.InsertJob(ctx, fullJob(id, base)); err != nil {
				return err
			}
		}
		return nil
	})
	as := []store.Approval{
		{JobID: "appr_a", Revision: 1, Approver: "carol@example.com", Role: "admin", At: base + 1, Reason: "ok"},
		{JobID: "appr_b", Revision: 1, Approver: "carol@example.com", Role: "admin", At: base + 1},
		{JobID: "appr_a", Revision: 1, Approver: "alice@example.com", Role: "finance-approver", At: base + 2},
	}
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.InsertApprovals(ctx, as) })
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		got, err := tx.ListApprovals(ctx, "appr_a", 1)
		if err != nil {
			return err
		}
		if want := []store.Approval{as[0], as[2]}; !reflect.DeepEqual(got, want) {
			t.Errorf("ListApprovals after InsertApprovals:\n got %+v\nwant %+v", got, want)
		}
		return nil
	})
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		got, err := tx.ListApprovalsOf(ctx, []string{"appr_b", "appr_a", "appr_missing"})
		if err != nil {
			return err
		}
		if want := []store.Approval{as[0], as[2], as[1]}; !reflect.DeepEqual(got, want) {
			t.Errorf("ListApprovalsOf:\n got %+v\nwant %+v", got, want)
		}
		if got, err := tx.ListApprovalsOf(ctx, nil); err != nil || len(got) != 0 {
			t.Errorf("ListApprovalsOf(nil) = %+v, %v; want nothing", got, err)
		}
		return nil
	})
	fresh := store.Approval{JobID: "appr_b", Revision: 1, Approver: "bob@example.com", Role: "admin", At: base + 3}
	for name, batch := range map[string][]store.Approval{
		"one exists":  {fresh, as[1]},
		"job missing": {fresh, {JobID: "appr_missing", Revision: 1, Approver: "bob@example.com", Role: "admin", At: base}},
	} {
		err := s.ReadWrite(t.Context(), func(ctx context.Context, tx store.Tx) error { return tx.InsertApprovals(ctx, batch) })
		want := store.ErrConflict
		if name == "job missing" {
			want = store.ErrNotFound
		}
		if !errors.Is(err, want) {
			t.Errorf("InsertApprovals, %s: %v, want %v", name, err, want)
		}
	}
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		if got, err := tx.ListApprovals(ctx, "appr_b", 1); err != nil || len(got) != 1 {
			t.Errorf("a refused InsertApprovals stored rows: %+v, %v", got, err)
		}
		return nil
	})
}

// testJobsLockOrder: transactions that lock overlapping sets of jobs with GetJobs, each
// set given in its own order, all commit: the rows are locked in one order, so no two
// of them wait for each other in a cycle (a deadlock would end one of them as ErrBusy
// once its retries ran out, or make it retry).
func testJobsLockOrder(t *testing.T, s store.Store) {
	ids := []string{"lock_a", "lock_b", "lock_c", "lock_d"}
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for _, id := range ids {
			if err := tx.InsertJob(ctx, fullJob(id, base)); err != nil {
				return err
			}
		}
		return nil
	})
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		order := slices.Clone(ids)
		if i%2 == 1 {
			slices.Reverse(order)
		}
		wg.Go(func() {
			errs <- s.ReadWrite(t.Context(), func(ctx context.Context, tx store.Tx) error {
				js, err := tx.GetJobs(ctx, order, true)
				if err != nil {
					return err
				}
				for k := range js {
					js[k].Attempt++
				}
				return tx.UpdateJobs(ctx, js)
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("ReadWrite: %v", err)
		}
	}
	for _, id := range ids {
		if j := getJob(t, s, id); j.Attempt != fullJob(id, base).Attempt+n {
			t.Errorf("%s: attempt %d after %d increments", id, j.Attempt, n)
		}
	}
}
