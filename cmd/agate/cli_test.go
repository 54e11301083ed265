package main

import (
	"bytes"
	"flag"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// Asking for help is not an error, wherever it is asked.
func TestHelpExitsZero(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--help"}, {"-h"}, {"help"},
		{"serve", "-h"}, {"serve", "--help"},
		{"policy", "-h"}, {"policy", "check", "--help"},
		{"evidence", "-h"}, {"evidence", "verify", "-h"}, {"evidence", "public-key", "--help"},
		{"notifications", "-h"}, {"notifications", "dead-letter", "-h"}, {"notifications", "requeue", "-h"},
	} {
		out, errs, code := runArgs(t, args...)
		if code != 0 || !strings.Contains(strings.ToLower(out+errs), "usage") {
			t.Errorf("%v: exit %d, output %q", args, code, out+errs)
		}
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	out, _, code := runArgs(t, "version")
	if code != 0 || !regexp.MustCompile(`^agate \S+ \(commit \S+, go\S+\)\n$`).MatchString(out) {
		t.Fatalf("exit %d, %q", code, out)
	}
}

// Layers: defaults < --config file < AGATE_* variables < flags.
func TestServeConfigFile(t *testing.T) {
	cfg := write(t, "agate.yaml", "grpc-addr: 127.0.0.1:1111\nhttp-addr: 127.0.0.1:2222\ntokens: file.yaml\n"+
		"decide-batch-max: 7\npprof: true\nseal-interval: 3s\n")
	t.Setenv("AGATE_HTTP_ADDR", "127.0.0.1:3333")
	c, err := parseServeConfig([]string{"--config", cfg, "--tokens", "flag.yaml"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	want := defaultServeConfig()
	want.GRPCAddr, want.HTTPAddr, want.TokensFile = "127.0.0.1:1111", "127.0.0.1:3333", "flag.yaml"
	want.DecideBatchMax, want.Pprof, want.SealInterval = 7, true, 3*time.Second
	if c != want {
		t.Fatalf("config\n%+v\nwant\n%+v", c, want)
	}
}

func TestServeConfigFileErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ body, want string }{
		{"grpc-adr: 127.0.0.1:1\n", `line 1: unknown key "grpc-adr"`},
		{"tokens: t.yaml\ndecide-batch-max: many\n", "decide-batch-max"},
		{"tokens: [a, b]\n", "line 1: tokens: want a single value"},
		{"- tokens\n", "want a mapping"},
		{"tokens: a\ntokens: b\n", "tokens"},
		{"tokens: t.yaml\nconfig: other.yaml\n", `unknown key "config"`},
	} {
		_, err := parseServeConfig([]string{"--config", write(t, "c.yaml", tc.body)}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error naming %q", tc.body, err, tc.want)
		}
	}
}

// The README's configuration table and examples/agate.yaml list exactly the flags
// `agate serve` has, so neither can drift from the code.
func TestConfigDocsMatchFlags(t *testing.T) {
	t.Parallel()
	var names []string
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	fs.SetOutput(&bytes.Buffer{})
	c := defaultServeConfig()
	serveFlags(fs, &c)
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	slices.Sort(names)

	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `--([a-z0-9-]+)`").FindAllStringSubmatch(string(readme), -1) {
		documented = append(documented, m[1])
	}
	slices.Sort(documented)
	if !slices.Equal(names, documented) {
		t.Errorf("README configuration table lists\n%v\nagate serve has\n%v", documented, names)
	}
	example, err := os.ReadFile("../../examples/agate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseServeConfig([]string{"--config", "../../examples/agate.yaml"}, &bytes.Buffer{}); err != nil {
		t.Errorf("examples/agate.yaml: %v", err)
	}
	for _, n := range names {
		if n != "config" && !regexp.MustCompile(`(?m)^#? ?`+regexp.QuoteMeta(n)+`:`).Match(example) {
			t.Errorf("examples/agate.yaml does not show %s", n)
		}
	}
}
