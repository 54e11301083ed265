package pgtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

const envWatchdog = "AGATE_PGTEST_WATCHDOG"

// watchSpec says what to clean up once the test binary is gone.
type watchSpec struct {
	Dir, Data, PgCtl, RunAs string // a throwaway cluster: stop it, delete Dir
	AdminURL, Prefix        string // an external server: drop the databases named Prefix…
}

// watchdogPipes are the write ends of the watchdogs' stdin. Only this process holds
// them (Go opens files close-on-exec), so they close exactly when it exits.
var watchdogPipes []*os.File

func init() {
	if spec := os.Getenv(envWatchdog); spec != "" {
		os.Exit(watch(spec))
	}
}

// startWatchdog re-executes the test binary as a watchdog in its own process group, so
// signals for the test run do not reach it, holding its stdin open until this exits.
func startWatchdog(spec watchSpec) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envWatchdog+"="+string(b))
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = w.Close()
		return fmt.Errorf("starting the cleanup watchdog: %w", err)
	}
	watchdogPipes = append(watchdogPipes, w)
	return nil
}

// watch waits for the test binary to exit, then cleans up.
func watch(raw string) int {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	var s watchSpec
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		return 2
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // EOF: the test binary has exited
	if s.Data != "" {
		if _, err := os.Stat(filepath.Join(s.Data, "postmaster.pid")); err == nil {
			_ = command(s.RunAs, s.PgCtl, "-D", s.Data, "-m", "immediate", "-w", "-t", "60", "stop").Run()
		}
	}
	if s.Dir != "" {
		_ = os.RemoveAll(s.Dir)
	}
	if s.AdminURL != "" {
		dropAll(s.AdminURL, s.Prefix)
	}
	return 0
}

// dropAll drops the databases whose names start with prefix.
func dropAll(adminURL, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE left(datname, length($1)) = $1`, prefix)
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, n := range names {
		if _, err := conn.Exec(ctx, dropSQL(n, false)); err != nil {
			_, _ = conn.Exec(ctx, dropSQL(n, true))
		}
	}
}
