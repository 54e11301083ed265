package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agate-pdp/agate/store/postgres/pgtest"
)

// TestDatabasePasswordSources checks, against a PostgreSQL that demands a password,
// that the password never has to be in --db: PGPASSWORD, PGPASSFILE and
// --db-password-file each supply it. Not parallel: it sets environment variables.
func TestDatabasePasswordSources(t *testing.T) {
	if os.Getenv(pgtest.EnvURL) != "" {
		t.Skip("rewrites pg_hba.conf, so it runs on the throwaway cluster only")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	base, err := url.Parse(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	role, password := passwordRole(ctx, t, base.String())
	u := *base
	u.User = url.User(role)
	db := u.String()
	wrong := u
	wrong.User = url.UserPassword(role, "not-the-password")

	open := func(db, passwordFile string) error {
		c := defaultServeConfig()
		c.DB, c.DBPasswordFile = db, passwordFile
		octx, ocancel := context.WithTimeout(ctx, 20*time.Second)
		defer ocancel()
		log := slog.New(slog.DiscardHandler)
		pw, err := c.databasePassword(log)
		if err != nil {
			return err
		}
		st, err := openStore(octx, c.DB, pw, log, nil)
		if err == nil {
			_ = st.Close()
		}
		return err
	}
	passfile := write(t, "pgpass", fmt.Sprintf("%s:%s:*:%s:%s\n", base.Hostname(), base.Port(), role, password))
	pwFile := write(t, "pw", password+"\n")
	for _, f := range []string{passfile, pwFile} {
		if err := os.Chmod(f, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PGPASSWORD", "")
	t.Setenv("PGPASSFILE", filepath.Join(t.TempDir(), "none"))

	// The server checks passwords: none and a wrong one are refused, and the refusal
	// does not repeat the password tried.
	if err := open(db, ""); err == nil {
		t.Fatal("connected without a password: the server does not check them")
	}
	if err := open(wrong.String(), ""); err == nil || strings.Contains(err.Error(), "not-the-password") {
		t.Fatalf("wrong password: %v", err)
	}

	t.Setenv("PGPASSWORD", password)
	if err := open(db, ""); err != nil {
		t.Fatalf("PGPASSWORD: %v", err)
	}
	t.Setenv("PGPASSWORD", "")

	t.Setenv("PGPASSFILE", passfile)
	if err := open(db, ""); err != nil {
		t.Fatalf("PGPASSFILE: %v", err)
	}
	t.Setenv("PGPASSFILE", filepath.Join(t.TempDir(), "none"))

	// --db-password-file wins over a stale PGPASSWORD.
	t.Setenv("PGPASSWORD", "stale")
	if err := open(db, pwFile); err != nil {
		t.Fatalf("--db-password-file: %v", err)
	}
	if err := open(db, write(t, "wrong", "stale\n")); err == nil || strings.Contains(err.Error(), "stale") {
		t.Fatalf("wrong --db-password-file: %v", err)
	}
}

// passwordRole creates a login role and makes the throwaway cluster demand its
// password over TCP (every other role keeps trust authentication).
func passwordRole(ctx context.Context, t *testing.T, admin string) (role, password string) {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	role, password = "agate_pw_"+hex.EncodeToString(b[:]), "pw-"+hex.EncodeToString(b[:])
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE ROLE "+role+" LOGIN SUPERUSER PASSWORD '"+password+"'"); err != nil {
		t.Fatal(err)
	}
	var hba string
	if err := conn.QueryRow(ctx, "SHOW hba_file").Scan(&hba); err != nil {
		t.Fatal(err)
	}
	lines := []string{
		"host all " + role + " 127.0.0.1/32 scram-sha-256",
		"local all all trust",
		"host all all 127.0.0.1/32 trust",
		"host all all ::1/128 trust",
	}
	sql := fmt.Sprintf("COPY (SELECT unnest(ARRAY['%s'])) TO '%s'", strings.Join(lines, "','"), strings.ReplaceAll(hba, "'", "''"))
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("rewriting %s: %v", hba, err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		t.Fatal(err)
	}
	// The reload is asynchronous: wait until a password-less login is refused.
	u, _ := url.Parse(admin)
	u.User = url.User(role)
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := pgx.Connect(ctx, u.String())
		if err != nil {
			break
		}
		_ = c.Close(ctx)
		if time.Now().After(deadline) {
			t.Fatal("pg_hba.conf reload did not take effect")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return role, password
}
