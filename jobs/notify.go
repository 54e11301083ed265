package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// The notification kinds: the transitions a person or system waits for.
const (
	NotifyPendingApproval = "pending_approval"
	NotifyApproved        = "approved"
	NotifyRejected        = "rejected"
	NotifyExpired         = "expired"
	NotifyCancelled       = "cancelled"
	NotifyConflict        = "conflict"
	NotifyPublished       = "published"
)

// NotifyKinds lists every notification kind in a stable order.
var NotifyKinds = []string{NotifyPendingApproval, NotifyApproved, NotifyRejected, NotifyExpired,
	NotifyCancelled, NotifyConflict, NotifyPublished}

// notifyKind is the notification a sealed event announces, or "" for none: only the
// first event of each transition counts, never a repeat, a refusal or a partial quorum.
func notifyKind(e *evidence.Event) string {
	switch e.Kind {
	case evidence.KindDecision:
		if e.Status == string(store.StatusPendingApproval) {
			return NotifyPendingApproval
		}
	case evidence.KindApproval:
		if !e.Repeat && e.Status == string(store.StatusApproved) {
			return NotifyApproved
		}
	case evidence.KindRejection:
		if !e.Repeat {
			return NotifyRejected
		}
	case evidence.KindExpiry:
		return NotifyExpired
	case evidence.KindCancel:
		return NotifyCancelled
	case evidence.KindConflict:
		// Only drift moves a job to conflict; other conflicts leave it as it was.
		if e.Conflict == ReasonSnapshotDrift && e.Status == string(store.StatusConflict) {
			return NotifyConflict
		}
	case evidence.KindPublish:
		return NotifyPublished
	}
	return ""
}

// notificationOf is the outbox row announcing e, and false when e announces nothing.
// Its id derives from the event's, so it is stable, and spread over the key space.
func notificationOf(e *evidence.Event) (store.Notification, bool) {
	kind := notifyKind(e)
	if kind == "" {
		return store.Notification{}, false
	}
	sum := sha256.Sum256([]byte(e.EventID))
	return store.Notification{ID: "msg_" + hex.EncodeToString(sum[:16]), JobID: e.JobID, EventID: e.EventID,
		Kind: kind, CreatedAt: e.At, State: store.NotificationPending, NextAt: e.At}, true
}

// notify writes the outbox row announcing e, if any, in e's transaction.
func notify(ctx context.Context, tx store.Tx, e *evidence.Event) error {
	n, ok := notificationOf(e)
	if !ok {
		return nil
	}
	return tx.InsertNotifications(ctx, []store.Notification{n})
}

// notifyAll writes the outbox rows announcing es in one statement.
func notifyAll(ctx context.Context, tx store.Tx, es []evidence.Event) error {
	var ns []store.Notification
	for i := range es {
		if n, ok := notificationOf(&es[i]); ok {
			ns = append(ns, n)
		}
	}
	if len(ns) == 0 {
		return nil
	}
	return tx.InsertNotifications(ctx, ns)
}
