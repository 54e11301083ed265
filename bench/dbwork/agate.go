package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// quiet are the serve flags that keep Agate's own background work (sealing, expiry,
// snapshot polling, notification delivery) out of a phase: each runs once at start, then
// not for an hour. The seal phase measures sealing on its own.
var quiet = []string{"--seal-interval", "1h", "--expiry-interval", "1h", "--snapshot-refresh", "1h", "--notify-poll", "1h"}

// agate is one running `agate serve`.
type agate struct {
	cmd  *exec.Cmd
	addr string
	done chan error
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port), nil
}

// startAgate starts bin on db with the example policy and tokens, the given extra flags,
// and waits until it is ready.
func startAgate(ctx context.Context, cfg config, name string, extra ...string) (*agate, error) {
	grpcAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := append([]string{"serve", "--db", cfg.DB, "--policy", filepath.Join(cfg.Root, "examples/policy.yaml"),
		"--tokens", filepath.Join(cfg.Root, "examples/tokens.yaml"), "--grpc-addr", grpcAddr, "--http-addr", httpAddr,
		"--evidence-key", filepath.Join(cfg.Work, "evidence.key")}, extra...)
	logf, err := os.OpenFile(filepath.Join(cfg.Work, "agate-"+name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(cfg.Agate, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	a := &agate{cmd: cmd, addr: grpcAddr, done: make(chan error, 1)}
	go func() { a.done <- cmd.Wait(); logf.Close() }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-a.done:
			return nil, fmt.Errorf("agate serve (%s) exited: %v; see %s", name, err, logf.Name())
		case <-ctx.Done():
			a.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return a, nil
			}
		}
	}
	a.stop()
	return nil, errors.New("agate serve did not become ready in 60 s")
}

// stop ends the server gracefully (so its connections close), killing it after 20 s.
func (a *agate) stop() {
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(20 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}
