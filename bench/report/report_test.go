package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agate-pdp/agate/bench/internal/stats"
)

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A ghz report of 5 calls over 2 s: 3 OK, one real failure, and one cut off
// when ghz closed its connections at the end.
const ghzJSON = `{"count": 5, "total": 2000000000, "details": [
 {"timestamp": "2026-01-01T00:00:00.5Z", "latency": 1000000, "status": "OK", "error": ""},
 {"timestamp": "2026-01-01T00:00:01Z", "latency": 3000000, "status": "OK", "error": ""},
 {"timestamp": "2026-01-01T00:00:01Z", "latency": 9000000, "status": "Aborted", "error": "rpc error: code = Aborted desc = busy"},
 {"timestamp": "2026-01-01T00:00:01.5Z", "latency": 2000000, "status": "OK", "error": ""},
 {"timestamp": "2026-01-01T00:00:02Z", "latency": 500000, "status": "Canceled",
  "error": "rpc error: code = Canceled desc = grpc: the client connection is closing"}]}`

func TestReadGhz(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := readGhz(write(t, dir, "r.json", ghzJSON))
	if err != nil {
		t.Fatal(err)
	}
	want := stats.Summary{OK: 3, Errors: 1, Seconds: 2, PerSec: 1.5, P50: 2, P90: 3, P99: 3}
	if s != want {
		t.Errorf("readGhz = %+v; want %+v", s, want)
	}
	if _, err := readGhz(write(t, dir, "none.json", `{"count": 2, "total": 1, "details": []}`)); err == nil {
		t.Error("a report with calls but no details was accepted")
	}
	// Details of the first 2 of 4 calls in 8 s: summarised over the 4 s they took.
	s, err = readGhz(write(t, dir, "capped.json", `{"count": 4, "total": 8000000000, "details": [
 {"latency": 1000000, "status": "OK"}, {"latency": 3000000, "status": "OK"}]}`))
	if err != nil || s.OK != 2 || s.Seconds != 4 || s.PerSec != 0.5 {
		t.Errorf("capped details: %+v, %v; want 2 OK over 4 s", s, err)
	}
}

func TestCutOff(t *testing.T) {
	t.Parallel()
	end := mustTime(t, "2026-01-01T00:00:10Z")
	tests := []struct {
		status, msg string
		at          string
		want        bool
	}{
		{"Canceled", "grpc: the client connection is closing", "2026-01-01T00:00:09.9Z", true},
		{"Unavailable", "transport is closing", "2026-01-01T00:00:09.5Z", true},
		{"Unavailable", "transport is closing", "2026-01-01T00:00:05Z", false}, // mid-run: the server went away
		{"Canceled", "context canceled", "2026-01-01T00:00:10Z", false},
		{"Aborted", "the job is busy", "2026-01-01T00:00:10Z", false},
	}
	for _, tt := range tests {
		if got := cutOff(tt.status, tt.msg, mustTime(t, tt.at), end); got != tt.want {
			t.Errorf("cutOff(%s, %q, %s) = %v; want %v", tt.status, tt.msg, tt.at, got, tt.want)
		}
	}
}

// heyOut is hey v0.1.5's output, trimmed, with its doubled percent signs.
const heyOut = `
Summary:
  Total:	2.0000 secs
  Slowest:	0.1756 secs
  Requests/sec:	1568.2526

Response time histogram:
  0.000 [1]	|

Latency distribution:
  10%% in 0.0029 secs
  50%% in 0.0073 secs
  90%% in 0.0185 secs
  99%% in 0.0651 secs

Status code distribution:
  [200]	3000 responses
  [500]	4 responses

Error distribution:
  [2]	Post "http://127.0.0.1:1/v1/data": context deadline exceeded
`

func TestReadHey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := readHey(write(t, dir, "hey.txt", heyOut))
	if err != nil {
		t.Fatal(err)
	}
	secs := []float64{0.0073, 0.0185, 0.0651} // as parsed, then scaled at run time
	want := stats.Summary{OK: 3000, Errors: 6, Seconds: 2, PerSec: 1500, P50: secs[0] * 1000, P90: secs[1] * 1000, P99: secs[2] * 1000}
	if s != want {
		t.Errorf("readHey = %+v; want %+v", s, want)
	}
	if _, err := readHey(write(t, dir, "empty.txt", "Summary:\n")); err == nil {
		t.Error("output without a total was accepted")
	}
}

func TestReadPgbench(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := write(t, dir, "out-c16.txt", `transaction type: insert.sql
number of clients: 16
duration: 2 s
number of transactions actually processed: 4
number of failed transactions: 1 (20.000%)
tps = 1936.140754 (without initial connection time)
`)
	// Two threads' logs; the third column is the latency in µs; a failed line has none.
	write(t, dir, "log-c16.77", "0 1 1000 0 1795687238 850501\n1 1 4000 0 1795687238 850522\n")
	write(t, dir, "log-c16.77.1", "8 1 2000 0 1795687238 841447\n9 1 3000 0 1795687238 841481\n9 2 failed 0 1795687238 841490\n")
	s, err := readPgbench(out, filepath.Join(dir, "log-c16"))
	if err != nil {
		t.Fatal(err)
	}
	want := stats.Summary{OK: 4, Errors: 1, Seconds: 2, PerSec: 1936.140754, P50: 2, P90: 4, P99: 4}
	if s != want {
		t.Errorf("readPgbench = %+v; want %+v", s, want)
	}
	if _, err := readPgbench(out, filepath.Join(dir, "log-c64")); err == nil {
		t.Error("missing logs were accepted")
	}
}

func TestReadGoBench(t *testing.T) {
	t.Parallel()
	p := write(t, t.TempDir(), "gotest.txt", `goos: linux
BenchmarkEngines/reference/match/agate-2    3353548    407.2 ns/op    16 B/op    1 allocs/op
BenchmarkEngines/reference/match/agate-2    3353548    300.0 ns/op    16 B/op    1 allocs/op
BenchmarkEngines/reference/match/agate-2    3353548    500.0 ns/op    16 B/op    1 allocs/op
BenchmarkEngines/reference/match/opa-parsed-2   9823   150384 ns/op   11803 B/op   214 allocs/op
PASS
`)
	got, err := readGoBench(p)
	if err != nil {
		t.Fatal(err)
	}
	if a := got["BenchmarkEngines/reference/match/agate"]; a.Runs != 3 || a.NsPerOp != 407.2 || a.AllocsPerOp != 1 {
		t.Errorf("agate = %+v; want the median 407.2 ns of 3 runs, 1 alloc", a)
	}
	if o := got["BenchmarkEngines/reference/match/opa-parsed"]; o.NsPerOp != 150384 || o.BytesPerOp != 11803 || o.AllocsPerOp != 214 {
		t.Errorf("opa-parsed = %+v", o)
	}
	if len(got) != 2 {
		t.Errorf("%d benchmarks; want 2: %v", len(got), got)
	}
}

func TestVerdict(t *testing.T) {
	t.Parallel()
	tests := []struct {
		got, want float64
		atLeast   bool
		measured  bool
		verdict   string
	}{
		{2.5, 2, true, true, "met"},
		{0.5, 2, true, true, "missed: 25% of the target"},
		{20, 25, false, true, "met"},
		{50, 25, false, true, "missed: 2.0× the limit"},
		{0, 2, true, false, "–"},
	}
	for _, tt := range tests {
		if v := verdict("t", tt.got, tt.want, "", tt.atLeast, tt.measured)[2]; v != tt.verdict {
			t.Errorf("verdict(%v vs %v, atLeast %v) = %q; want %q", tt.got, tt.want, tt.atLeast, v, tt.verdict)
		}
	}
}

func TestRenderLoadRatios(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, dir, "meta.md", "## Load\n")
	// Decide at 64 clients on PostgreSQL: 4 OK calls in 2 s = 2/s against pgbench's 4 TPS.
	write(t, dir, "ghz/postgres-decide-c64.json", `{"count": 4, "total": 2000000000, "details": [
 {"latency": 1000000, "status": "OK"}, {"latency": 1000000, "status": "OK"},
 {"latency": 1000000, "status": "OK"}, {"latency": 30000000, "status": "OK"}]}`)
	write(t, dir, "pgbench/out-c64.txt", "duration: 2 s\ntps = 4.0 (without initial connection time)\n")
	write(t, dir, "pgbench/log-c64.1", "0 1 1000 0 1 1\n")
	write(t, dir, "hey/opa-c64.txt", "Summary:\n  Total:\t2.0000 secs\nStatus code distribution:\n  [200]\t16 responses\n")
	write(t, dir, "hey/opa-c64.cpu", "0.8 0.9 1.9\n")
	// Evaluate at 64 clients: 8 calls in 2 s = 4/s, half of OPA's 8/s.
	write(t, dir, "ghz/sqlite-evaluate-c64.json", `{"count": 8, "total": 2000000000, "details": [
 {"latency": 1000000, "status": "OK"}, {"latency": 1000000, "status": "OK"}, {"latency": 1000000, "status": "OK"},
 {"latency": 1000000, "status": "OK"}, {"latency": 1000000, "status": "OK"}, {"latency": 1000000, "status": "OK"},
 {"latency": 1000000, "status": "OK"}, {"latency": 1000000, "status": "OK"}]}`)
	write(t, dir, "ghz/sqlite-evaluate-c64.cpu", "0.1 1.2 1.9\n")
	write(t, dir, "ghz/postgres-decide-c64.cpu", "0.5 1 2\n")
	write(t, dir, "ghz/postgres-decide-c64.pg", "8 4\n")
	write(t, dir, "rss/postgres-decide-c64.txt", "10240\n20480\n15360\n")
	var b strings.Builder
	if err := renderLoad(&b, dir); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| postgres | random | 64 | 2 | 1.00 | 30.0 | 30.0 | 0 | 4 | 0.50× | 8 | 0.25× |",
		"| 64 | 4 | 1.00 | 1.00 | 1.00 | 0 |",
		"| postgres | Decide | 64 | 3 | 10.0 | – | 20.0 | 15.0 |",
		"| postgres | Decide | 64 | 0.50 | 1.00 | 2.00 | 250,000 | 2.00 | 1.00 |",
		"| Decide, PostgreSQL, 64 clients ≥ 2× pgbench TPS | 0.50× | missed: 25% of the target |",
		"| Decide, PostgreSQL, 64 clients p99 ≤ 25 ms | 30.00 ms | missed: 1.2× the limit |",
		"| Decide, SQLite, 64 clients ≥ 5,000/s | not measured | – |",
		"| Decide, PostgreSQL, 64 clients ≥ OPA REST (stretch) | 0.25× | missed: 25% of the target |",
		"| RSS at 64 clients < 200 MB (peak of all runs) | 20.00 MB | met |",
		// Agate 0.1 cores / 4 calls/s = 25,000 µs; OPA 0.8 / 8 = 100,000 µs: 4× less CPU per call.
		"| sqlite | 64 | 4 | 1.00 | 1.00 | 1.00 | 0 | 8 | 0.50× | 25,000 | 100,000 | 4.00× | 1.20 | 0.90 |",
		"| – | OPA REST (server: opa, generator: hey) | 64 | 0.80 | 0.90 | 1.90 | 100,000 | – | – |",
		"| Evaluate, 64 clients ≥ 2× OPA REST (SQLite run) | 0.50× | missed: 25% of the target |",
		"| Evaluate, 16 clients p99 ≤ 2 ms (SQLite run) | not measured | – |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestReadDBXacts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	x, err := readDBXacts(write(t, dir, "a.pg", "300 150\n"))
	if err != nil || x != (dbXacts{Commits: 300, Rollbacks: 150, Known: true}) {
		t.Fatalf("readDBXacts = %+v, %v", x, err)
	}
	if got := x.perCall(100, x.Rollbacks); got != "1.50" {
		t.Errorf("rollbacks per call = %s; want 1.50", got)
	}
	if x, err := readDBXacts(filepath.Join(dir, "none.pg")); err != nil || x.Known || x.perCall(1, 1) != "–" {
		t.Errorf("missing file: %+v, %v; want unknown", x, err)
	}
	if _, err := readDBXacts(write(t, dir, "b.pg", "1\n")); err == nil {
		t.Error("a malformed file was accepted")
	}
}

func TestMinuteMeans(t *testing.T) {
	t.Parallel()
	var r rssSamples
	for i := range 250 { // two whole minutes at 0.5 s, then a partial one
		r = append(r, float64(1024*(10+10*(i/120))))
	}
	if got := r.minuteMeans(); len(got) != 2 || got[0] != "10.0" || got[1] != "20.0" {
		t.Errorf("minuteMeans = %v; want [10.0 20.0]", got)
	}
}

func TestNum(t *testing.T) {
	t.Parallel()
	for in, want := range map[float64]string{0: "0", 999.4: "999", 1000: "1,000", 1234567: "1,234,567", -1500: "-1,500"} {
		if got := num(in); got != want {
			t.Errorf("num(%v) = %q; want %q", in, got, want)
		}
	}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestReadCPU(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c, err := readCPU(write(t, dir, "a.cpu", "0.45 1.10 1.92\n"))
	if err != nil || c != (cpuUse{Server: 0.45, Generator: 1.10, Machine: 1.92}) {
		t.Errorf("readCPU = %+v, %v", c, err)
	}
	if c, err := readCPU(filepath.Join(dir, "missing.cpu")); err != nil || c != (cpuUse{}) {
		t.Errorf("missing file: %+v, %v; want zeros and no error", c, err)
	}
	if _, err := readCPU(write(t, dir, "b.cpu", "0.45 x 1\n")); err == nil {
		t.Error("a malformed file was accepted")
	}
	if got := perCall(0.5, 2000); got != "250" {
		t.Errorf("perCall(0.5 cores, 2000/s) = %s µs; want 250", got)
	}
}
