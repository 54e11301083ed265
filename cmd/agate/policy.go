package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/agate-pdp/agate/decision"
	"github.com/agate-pdp/agate/snapshots"
)

func runPolicy(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitError(2)
	}
	switch {
	case isHelp(args):
		fmt.Fprint(stdout, usage)
		return nil
	case args[0] == "check" && len(args) == 2:
		return policyCheck(args[1], stdout, stderr)
	case args[0] == "test" && len(args) == 3:
		return policyTest(args[1], args[2], stdout, stderr)
	default:
		fmt.Fprint(stderr, usage)
		return exitError(2)
	}
}

// loadPolicy reads and compiles a policy file, printing every error with its line.
func loadPolicy(path string, stderr io.Writer) (snapshots.Snapshot, *decision.Engine, []decision.Warning, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return snapshots.Snapshot{}, nil, nil, err
	}
	snap, eng, warns, err := snapshots.New(src, "", time.Time{})
	if err != nil {
		printPolicyErrors(stderr, path, err)
		return snapshots.Snapshot{}, nil, nil, exitError(1)
	}
	return snap, eng, warns, nil
}

func printPolicyErrors(w io.Writer, path string, err error) {
	var multi interface{ Unwrap() []error }
	errs := []error{err}
	if errors.As(err, &multi) {
		errs = multi.Unwrap()
	}
	for _, e := range errs {
		fmt.Fprintf(w, "%s: %v\n", path, e)
	}
}

func policyCheck(path string, stdout, stderr io.Writer) error {
	snap, _, warns, err := loadPolicy(path, stderr)
	if err != nil {
		return err
	}
	for _, w := range warns {
		fmt.Fprintf(stderr, "%s: line %d: warning: %s\n", path, w.Line, w.Msg)
	}
	fmt.Fprintf(stdout, "ok: %s\nsnapshot: %s\nsha256: %s\nrules: %d\nwarnings: %d\n",
		path, snap.ID, snap.SHA256, snap.RuleCount, len(warns))
	return nil
}

func policyTest(policyPath, casesPath string, stdout, stderr io.Writer) error {
	_, eng, _, err := loadPolicy(policyPath, stderr)
	if err != nil {
		return err
	}
	src, err := os.ReadFile(casesPath)
	if err != nil {
		return err
	}
	suite, err := decision.ParseCases(src)
	if err != nil {
		printPolicyErrors(stderr, casesPath, err)
		return exitError(1)
	}
	passed, failed := 0, 0
	for _, r := range suite.Run(eng) {
		if r.Passed {
			passed++
			fmt.Fprintf(stdout, "PASS  %s\n", r.Name)
			continue
		}
		failed++
		fmt.Fprintf(stdout, "FAIL  %s: got %s, want %s\n", r.Name, r.Got, r.Want)
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return exitError(1)
	}
	return nil
}
