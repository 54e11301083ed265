package pgtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// startCluster initdb's and starts a throwaway cluster and returns the URL of its
// maintenance database and its binaries' directory. Durability is off: the cluster dies
// with the test binary.
func startCluster() (url, bin string, err error) {
	if bin, err = binDir(); err != nil {
		return "", "", err
	}
	dir, err := os.MkdirTemp("", "agate-pg-")
	if err != nil {
		return "", "", err
	}
	// initdb refuses to run as root: the cluster belongs to the postgres user, which
	// must own its directory (a test's own TempDir is root's and 0700).
	runAs := ""
	if os.Geteuid() == 0 {
		runAs = "postgres"
		if err := chown(dir, runAs); err != nil {
			_ = os.RemoveAll(dir)
			return "", "", err
		}
	}
	data := filepath.Join(dir, "data")
	pgCtl := filepath.Join(bin, "pg_ctl")
	if err := startWatchdog(watchSpec{Dir: dir, Data: data, PgCtl: pgCtl, RunAs: runAs}); err != nil {
		_ = os.RemoveAll(dir)
		return "", "", err
	}
	out, err := command(runAs, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync").CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("initdb: %w: %s", err, out)
	}
	// The port is free when chosen but another process may take it before the server
	// binds it: try a few.
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return "", "", err
		}
		opts := strings.Join([]string{"-c listen_addresses=127.0.0.1", "-c port=" + strconv.Itoa(port),
			"-c unix_socket_directories=" + dir, "-c fsync=off", "-c synchronous_commit=off",
			"-c full_page_writes=off", "-c max_connections=300"}, " ")
		out, err = command(runAs, pgCtl, "-D", data, "-l", filepath.Join(dir, "server.log"),
			"-w", "-t", "60", "-o", opts, "start").CombinedOutput()
		if err == nil {
			return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port), bin, nil
		}
		if attempt == 3 {
			log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			return "", "", fmt.Errorf("pg_ctl start: %w: %s\n%s", err, out, log)
		}
	}
}

// binDir finds the server binaries, which Debian keeps off PATH.
func binDir() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(found) == 0 {
		return "", errors.New("no PostgreSQL server binaries (pg_config --bindir has no initdb)")
	}
	slices.SortFunc(found, func(a, b string) int { return majorOf(a) - majorOf(b) })
	return filepath.Dir(found[len(found)-1]), nil
}

func majorOf(initdb string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return n
}

// command runs name as user runAs ("" for the current user).
func command(runAs, name string, args ...string) *exec.Cmd {
	if runAs == "" {
		return exec.Command(name, args...)
	}
	return exec.Command("runuser", append([]string{"-u", runAs, "--", name}, args...)...)
}

func chown(dir, name string) error {
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("running as root needs the %s user: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(dir, uid, gid)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
