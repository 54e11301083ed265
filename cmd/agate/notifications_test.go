package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/sqlite"
)

// The dead-letter list shows dead notifications only, for a person and for a script.
func TestNotificationsDeadLetter(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "agate.db")
	st, err := sqlite.Open(context.Background(), db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const at = 1775001600000000
	ns := []store.Notification{
		{ID: "msg_dead", JobID: "pay-1", EventID: "01A", Kind: "pending_approval", CreatedAt: at, State: store.NotificationDead,
			Attempts: 10, NextAt: at, DeliveredTo: []string{"slack"}, LastError: "[ops: HTTP 503]", DoneAt: at + 1},
		{ID: "msg_ok", JobID: "pay-2", EventID: "01B", Kind: "approved", CreatedAt: at, State: store.NotificationDelivered, DoneAt: at},
	}
	err = st.ReadWrite(context.Background(), func(ctx context.Context, tx store.Tx) error { return tx.InsertNotifications(ctx, ns) })
	if err != nil {
		t.Fatal(err)
	}
	st.Close()

	out, errs, code := runArgs(t, "notifications", "dead-letter", "--db", db)
	if code != 0 || !strings.Contains(out, "msg_dead") || !strings.Contains(out, "[ops: HTTP 503]") || strings.Contains(out, "msg_ok") {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	out, _, code = runArgs(t, "notifications", "dead-letter", "--db", db, "--json")
	var d deadLetter
	if err := json.Unmarshal([]byte(out), &d); code != 0 || err != nil || d.ID != "msg_dead" || d.Attempts != 10 ||
		d.DeliveredTo[0] != "slack" || d.DeadAt != "2026-04-01T00:00:00Z" {
		t.Fatalf("exit %d, %v: %s", code, err, out)
	}
	if _, _, code := runArgs(t, "notifications", "dead-letter"); code != 2 {
		t.Errorf("without --db: exit %d, want 2", code)
	}
}

// A bad destinations file stops the start before the database is touched, naming the
// field and not the secret.
func TestServeRefusesBadDestinations(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := write(t, "notifications.yaml", "destinations:\n  - {name: ops, url: 'https://x.example', secrets: [whsec_dG9vc2hvcnQ=]}\n")
	c := defaultServeConfig()
	c.NotificationsFile, c.DB = file, filepath.Join(dir, "agate.db")
	_, err := c.loadDestinations(slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)))
	if err == nil || !strings.Contains(err.Error(), "--notifications: destinations[0].secrets[0]") || strings.Contains(err.Error(), "dG9vc2hvcnQ") {
		t.Fatalf("%v", err)
	}
}

// Requeueing makes named (or all) dead notifications pending again and leaves others.
func TestNotificationsRequeue(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "agate.db")
	st, err := sqlite.Open(context.Background(), db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const at = 1775001600000000
	dead := func(id string) store.Notification {
		return store.Notification{ID: id, JobID: "pay-1", EventID: "01" + id, Kind: "approved", CreatedAt: at,
			State: store.NotificationDead, Attempts: 10, DoneAt: at + 1, LastError: "HTTP 503"}
	}
	ns := []store.Notification{dead("msg_a"), dead("msg_b"), dead("msg_c"),
		{ID: "msg_ok", JobID: "pay-2", EventID: "01B", Kind: "approved", CreatedAt: at, State: store.NotificationDelivered, DoneAt: at}}
	err = st.ReadWrite(context.Background(), func(ctx context.Context, tx store.Tx) error { return tx.InsertNotifications(ctx, ns) })
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{}, {"--all", "msg_a"}, {"msg a"}} {
		if _, errs, code := runArgs(t, append([]string{"notifications", "requeue", "--db", db}, args...)...); code != 2 {
			t.Errorf("requeue %q: exit %d, want 2 (%s)", args, code, errs)
		}
	}
	out, errs, code := runArgs(t, "notifications", "requeue", "--db", db, "msg_a", "msg_ok")
	if code != 0 || !strings.Contains(out, "requeued 1 ") || !strings.Contains(errs, "1 of the named") {
		t.Fatalf("requeue msg_a msg_ok: exit %d\n%s%s", code, out, errs)
	}
	out, _, _ = runArgs(t, "notifications", "dead-letter", "--db", db)
	if strings.Contains(out, "msg_a") || !strings.Contains(out, "msg_b") {
		t.Fatalf("dead letters after requeueing msg_a:\n%s", out)
	}
	if out, errs, code := runArgs(t, "notifications", "requeue", "--db", db, "--all"); code != 0 || !strings.Contains(out, "requeued 2 ") {
		t.Fatalf("requeue --all: exit %d\n%s%s", code, out, errs)
	}
	if out, _, _ := runArgs(t, "notifications", "dead-letter", "--db", db); !strings.Contains(out, "no dead-lettered") {
		t.Fatalf("dead letters after --all:\n%s", out)
	}
}
