// Command agate is Agate's one binary: the policy decision point server (`agate serve`),
// the policy tools (`agate policy check|test`), the evidence tools (`agate evidence
// verify|public-key`) and the approver's client (`agate approvals`).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/agate-pdp/agate/buildinfo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var ex exitError
		if errors.As(err, &ex) {
			os.Exit(int(ex))
		}
		fmt.Fprintln(os.Stderr, "agate:", err)
		os.Exit(1)
	}
}

// exitError ends the process with a status after the command already said why.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

const usage = `usage:
  agate serve [flags]                    run the gRPC server (agate serve -h for flags)
  agate policy check FILE                validate a policy; print its snapshot id, sha256 and rule count
  agate policy test FILE CASES.yaml      run policy test cases
  agate evidence verify --public-key KEY (--db DB | --file EXPORT)
                                         verify evidence against signed checkpoints
  agate evidence public-key [--evidence-key FILE] [--db DB]
                                         print the checkpoint key to pin
  agate notifications dead-letter --db DB [--limit N] [--json]
                                         list notifications that kept failing
  agate approvals list|show|approve|reject [JOB] [flags]
                                         the approver's queue: list, show a job, approve or reject it
                                         (agate approvals -h for flags)
  agate version                          print the version, commit and Go version
`

// isHelp reports whether a subcommand's arguments ask for help.
func isHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help", "help":
			return true
		}
	}
	return false
}

// run dispatches a command line; it is main without the process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitError(2)
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stderr)
	case "policy":
		return runPolicy(args[1:], stdout, stderr)
	case "evidence":
		return runEvidence(ctx, args[1:], stdout, stderr)
	case "notifications":
		return runNotifications(ctx, args[1:], stdout, stderr)
	case "approvals":
		return runApprovals(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, buildinfo.String())
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "unknown command %q\n%s", args[0], usage)
		return exitError(2)
	}
}
