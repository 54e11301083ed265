package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pipeline:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	clients := make([]agatev1.DecisionServiceClient, cfg.Clients)
	for i := range clients {
		// One connection per client, as the single-RPC load runs use.
		conn, err := grpc.NewClient(cfg.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		clients[i] = agatev1.NewDecisionServiceClient(conn)
	}
	res := drive(ctx, cfg, clients)
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		return err
	}
	if res.Jobs.OK == 0 {
		return errors.New("no job went through the pipeline")
	}
	return nil
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	c := config{}
	fs := flag.NewFlagSet("pipeline", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:7070", "Agate's gRPC address (loopback only)")
	fs.IntVar(&c.Clients, "clients", 16, "concurrent clients, each with its own connection")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "how long to drive jobs")
	fs.Int64Var(&c.MaxJobs, "max-jobs", 1_000_000, "stop after starting this many jobs")
	fs.Int64Var(&c.MaxErrors, "max-errors", 1000, "give up after this many failed jobs")
	fs.DurationVar(&c.CallTimeout, "call-timeout", 10*time.Second, "deadline of each call")
	fs.StringVar(&c.Prefix, "prefix", "pipe", "job id prefix; make it unique per run against one database")
	fs.StringVar(&c.IDs, "ids", "random", "job ids after the prefix: random (128 random bits) or sequential (a counter)")
	fs.StringVar(&c.DecideToken, "decide-token", "dev-decide", "bearer token of the principal that Decides")
	fs.StringVar(&c.ApproveToken, "approve-token", "dev-alice", "bearer token of the approver")
	fs.StringVar(&c.PublishToken, "publish-token", "dev-dispatch", "bearer token of the dispatcher")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.IDs != "random" && c.IDs != "sequential" {
		return c, fmt.Errorf("-ids: %q is neither random nor sequential", c.IDs)
	}
	if c.Clients < 1 || c.Duration <= 0 || c.MaxJobs < 1 || c.MaxErrors < 1 || c.CallTimeout <= 0 {
		return c, errors.New("-clients, -duration, -max-jobs, -max-errors and -call-timeout must be positive")
	}
	return c, nil
}
