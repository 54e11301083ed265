package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/agate-pdp/agate/store"
)

func pendingNotification(id string, at int64) store.Notification {
	return store.Notification{ID: id, JobID: "job_" + id, EventID: "01EV" + id, Kind: "pending_approval",
		CreatedAt: at, State: store.NotificationPending, NextAt: at}
}

func listNotifications(t *testing.T, s store.Store, q store.NotificationQuery) (ns []store.Notification) {
	t.Helper()
	read(t, s, func(ctx context.Context, tx store.Tx) (err error) {
		ns, err = tx.ListNotifications(ctx, q)
		return err
	})
	return ns
}

func notificationIDs(ns []store.Notification) []string {
	ids := make([]string, len(ns))
	for i, n := range ns {
		ids[i] = n.ID
	}
	return ids
}

func claim(t *testing.T, s store.Store, owner string, now, until int64, limit int) (ns []store.Notification) {
	t.Helper()
	write(t, s, func(ctx context.Context, tx store.Tx) (err error) {
		ns, err = tx.ClaimNotifications(ctx, owner, now, until, limit)
		return err
	})
	return ns
}

// Inserted rows read back as written, many at a time across the statement limit; an
// existing id fails the whole insert; a rolled-back transaction leaves none.
func testNotificationsInsert(t *testing.T, s store.Store) {
	ns := make([]store.Notification, bulkN)
	for i := range ns {
		ns[i] = pendingNotification(fmt.Sprintf("ntf_%04d", i), base)
	}
	ns[7].DeliveredTo, ns[7].LastError, ns[7].Attempts = []string{"a", "b"}, "503", 2
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.InsertNotifications(ctx, ns) })
	got := listNotifications(t, s, store.NotificationQuery{})
	if len(got) != bulkN {
		t.Fatalf("%d notifications stored, want %d", len(got), bulkN)
	}
	if !reflect.DeepEqual(got[7], ns[7]) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got[7], ns[7])
	}
	if got := listNotifications(t, s, store.NotificationQuery{JobID: "job_ntf_0003"}); len(got) != 1 || got[0].ID != "ntf_0003" {
		t.Errorf("by job: %v", notificationIDs(got))
	}

	dup := []store.Notification{pendingNotification("ntf_new", base), pendingNotification("ntf_0001", base)}
	err := s.ReadWrite(t.Context(), func(ctx context.Context, tx store.Tx) error { return tx.InsertNotifications(ctx, dup) })
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("insert of an existing id: %v, want ErrConflict", err)
	}
	boom := errors.New("the transition failed")
	err = s.ReadWrite(t.Context(), func(ctx context.Context, tx store.Tx) error {
		if err := tx.InsertNotifications(ctx, []store.Notification{pendingNotification("ntf_rolled_back", base)}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	for _, id := range []string{"ntf_new", "ntf_rolled_back"} {
		if got := listNotifications(t, s, store.NotificationQuery{JobID: "job_" + id}); len(got) != 0 {
			t.Errorf("%s was stored by a transaction that did not commit", id)
		}
	}
}

// Claims take due, unleased, pending rows oldest due first, up to the limit; a live
// lease keeps a row from every other claim, a lapsed one does not; settling needs the
// lease.
func testNotificationsClaim(t *testing.T, s store.Store) {
	ns := []store.Notification{
		pendingNotification("c_late", base+30),
		pendingNotification("c_first", base+10),
		pendingNotification("c_second", base+20),
		pendingNotification("c_future", base+1000),
	}
	done := pendingNotification("c_done", base)
	done.State, done.DoneAt = store.NotificationDelivered, base
	ns = append(ns, done)
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.InsertNotifications(ctx, ns) })

	now := base + 100
	a := claim(t, s, "replica-a", now, now+50, 2)
	if ids := notificationIDs(a); !reflect.DeepEqual(ids, []string{"c_first", "c_second"}) {
		t.Fatalf("first claim %v, want the two oldest due", ids)
	}
	if a[0].ClaimedBy != "replica-a" || a[0].ClaimUntil != now+50 {
		t.Errorf("claimed row %+v", a[0])
	}
	b := claim(t, s, "replica-b", now, now+50, 10)
	if ids := notificationIDs(b); !reflect.DeepEqual(ids, []string{"c_late"}) {
		t.Fatalf("second claim %v, want only the unleased due row", ids)
	}
	if got := claim(t, s, "replica-b", now+49, now+99, 10); len(got) != 0 {
		t.Fatalf("claimed leased rows: %v", notificationIDs(got))
	}

	// b settles its row: delivered, and never claimed again.
	settled := b[0]
	settled.State, settled.DoneAt, settled.DeliveredTo = store.NotificationDelivered, now+1, []string{"ops"}
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.SettleNotification(ctx, "replica-b", settled) })
	// A lapsed lease is claimed by another deliverer; the first can no longer settle it.
	c := claim(t, s, "replica-c", now+50, now+500, 10)
	if ids := notificationIDs(c); !reflect.DeepEqual(ids, []string{"c_first", "c_second"}) {
		t.Fatalf("claim after the lease lapsed: %v", ids)
	}
	stale := a[0]
	stale.State, stale.DoneAt = store.NotificationDelivered, now+51
	err := s.ReadWrite(t.Context(), func(ctx context.Context, tx store.Tx) error {
		return tx.SettleNotification(ctx, "replica-a", stale)
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("settle by a deliverer whose lease was taken over: %v, want ErrConflict", err)
	}
	// c delivers one and retries the other later: back in the queue, due then, with its
	// lease freed.
	first := c[0]
	first.State, first.DoneAt = store.NotificationDelivered, now+60
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.SettleNotification(ctx, "replica-c", first) })
	retry := c[1]
	retry.Attempts, retry.NextAt, retry.LastError = 1, now+2000, "HTTP 503"
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.SettleNotification(ctx, "replica-c", retry) })
	if got := claim(t, s, "replica-d", now+1999, now+3000, 10); len(got) != 1 || got[0].ID != "c_future" {
		t.Fatalf("claim before the retry is due: %v", notificationIDs(got))
	}
	got := claim(t, s, "replica-d", now+2000, now+3000, 10)
	if len(got) != 1 || got[0].ID != retry.ID || got[0].Attempts != 1 || got[0].LastError != "HTTP 503" {
		t.Fatalf("claim of the due retry: %+v", got)
	}
	read(t, s, func(ctx context.Context, tx store.Tx) error {
		counts, err := tx.CountNotifications(ctx)
		if err != nil {
			return err
		}
		if want := map[store.NotificationState]int{"pending": 2, "delivered": 3}; !reflect.DeepEqual(counts, want) {
			t.Errorf("counts %v, want %v", counts, want)
		}
		return nil
	})
}

// Concurrent claimers from many goroutines never claim one row twice, and together
// claim every row.
func testNotificationsClaimRace(t *testing.T, s store.Store) {
	const rows, claimers = 60, 6
	ns := make([]store.Notification, rows)
	for i := range ns {
		ns[i] = pendingNotification(fmt.Sprintf("race_%02d", i), base)
	}
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.InsertNotifications(ctx, ns) })
	var mu sync.Mutex
	owner := map[string]string{}
	var wg sync.WaitGroup
	for c := range claimers {
		wg.Go(func() {
			me := fmt.Sprint("claimer-", c)
			for {
				var got []store.Notification
				err := s.ReadWrite(context.Background(), func(ctx context.Context, tx store.Tx) (err error) {
					got, err = tx.ClaimNotifications(ctx, me, base+1, base+1_000_000, 4)
					return err
				})
				if err != nil {
					t.Errorf("%s: %v", me, err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, n := range got {
					if prev, ok := owner[n.ID]; ok {
						t.Errorf("%s claimed by %s and %s", n.ID, prev, me)
					}
					owner[n.ID] = me
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(owner) != rows {
		t.Errorf("%d of %d rows claimed", len(owner), rows)
	}
}

// Pruning deletes finished rows older than the cutoff, and pending rows created before
// it, in bounded steps; newer rows stay; the dead-letter list pages by time.
func testNotificationsPrune(t *testing.T, s store.Store) {
	mk := func(id string, st store.NotificationState, created, doneAt int64) store.Notification {
		n := pendingNotification(id, created)
		n.State, n.DoneAt = st, doneAt
		return n
	}
	ns := []store.Notification{
		mk("p_old_delivered", store.NotificationDelivered, base, base+10),
		mk("p_old_dead", store.NotificationDead, base, base+20),
		mk("p_old_pending", store.NotificationPending, base, 0),
		mk("p_new_delivered", store.NotificationDelivered, base, base+200),
		mk("p_new_dead", store.NotificationDead, base, base+300),
		mk("p_new_pending", store.NotificationPending, base+200, 0),
	}
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.InsertNotifications(ctx, ns) })
	dead := listNotifications(t, s, store.NotificationQuery{State: store.NotificationDead, Limit: 1})
	if ids := notificationIDs(dead); !reflect.DeepEqual(ids, []string{"p_old_dead"}) {
		t.Fatalf("first dead-letter page %v", ids)
	}
	dead = listNotifications(t, s, store.NotificationQuery{State: store.NotificationDead, AfterDoneAt: dead[0].DoneAt, AfterID: dead[0].ID})
	if ids := notificationIDs(dead); !reflect.DeepEqual(ids, []string{"p_new_dead"}) {
		t.Fatalf("second dead-letter page %v", ids)
	}
	var pruned []int
	for range 3 {
		write(t, s, func(ctx context.Context, tx store.Tx) error {
			n, err := tx.PruneNotifications(ctx, base+100, 2)
			pruned = append(pruned, n)
			return err
		})
	}
	if !reflect.DeepEqual(pruned, []int{2, 1, 0}) {
		t.Errorf("pruned %v in steps of 2, want [2 1 0]", pruned)
	}
	left := notificationIDs(listNotifications(t, s, store.NotificationQuery{}))
	if want := []string{"p_new_pending", "p_new_delivered", "p_new_dead"}; !reflect.DeepEqual(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
}

// Requeueing makes dead rows pending and due again, keeps whom they reached, and leaves
// rows in other states alone, whether named or not.
func testNotificationsRequeue(t *testing.T, s store.Store) {
	mk := func(id string, st store.NotificationState) store.Notification {
		n := pendingNotification(id, base)
		n.State, n.Attempts, n.LastError = st, 10, "receiver down"
		if st != store.NotificationPending {
			n.DoneAt = base + 50
		}
		n.DeliveredTo = []string{"ops"}
		return n
	}
	ns := []store.Notification{mk("r_dead_a", store.NotificationDead), mk("r_dead_b", store.NotificationDead),
		mk("r_dead_c", store.NotificationDead), mk("r_delivered", store.NotificationDelivered), mk("r_pending", store.NotificationPending)}
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.InsertNotifications(ctx, ns) })
	requeue := func(ids []string) (n int) {
		write(t, s, func(ctx context.Context, tx store.Tx) (err error) {
			n, err = tx.RequeueNotifications(ctx, ids, base+100)
			return err
		})
		return n
	}
	if n := requeue([]string{"r_dead_a", "r_delivered", "r_pending", "r_missing"}); n != 1 {
		t.Fatalf("requeued %d of the named rows, want only the dead one", n)
	}
	got := listNotifications(t, s, store.NotificationQuery{State: store.NotificationPending})
	var a store.Notification
	for _, n := range got {
		if n.ID == "r_dead_a" {
			a = n
		}
	}
	if a.ID == "" || a.Attempts != 0 || a.NextAt != base+100 || a.LastError != "" || a.DoneAt != 0 ||
		!reflect.DeepEqual(a.DeliveredTo, []string{"ops"}) {
		t.Fatalf("requeued row %+v: want pending, due at %d, attempts and error reset, delivered_to kept", a, base+100)
	}
	if claimed := claim(t, s, "replica-a", base+100, base+200, 10); !slices.Contains(notificationIDs(claimed), "r_dead_a") {
		t.Errorf("the requeued row is not claimable when due: %v", notificationIDs(claimed))
	}
	if n := requeue(nil); n != 2 {
		t.Errorf("requeueing every dead row: %d, want 2", n)
	}
	if dead := listNotifications(t, s, store.NotificationQuery{State: store.NotificationDead}); len(dead) != 0 {
		t.Errorf("dead rows left: %v", notificationIDs(dead))
	}
	if del := listNotifications(t, s, store.NotificationQuery{State: store.NotificationDelivered}); len(del) != 1 {
		t.Errorf("delivered rows: %v", notificationIDs(del))
	}
}
