package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/agate-pdp/agate/bench/internal/stats"
)

var (
	loadBackends = []string{"sqlite", "postgres"}
	loadClients  = []int{1, 16, 64}
	loadRPCs     = []string{"evaluate", "decide", "decide-seq", "decide-soak"}
	rpcNames     = map[string]string{"evaluate": "Evaluate", "decide": "Decide", "decide-seq": "Decide, sequential ids",
		"decide-soak": "Decide, soak", "opa": "OPA REST (server: opa, generator: hey)"}
	decideIDs = map[string]string{"decide": "random", "decide-seq": "sequential", "decide-soak": "random (soak)"}
)

// loadCase is one measured case of a load run and where its time went.
type loadCase struct {
	backend, rpc, ids string
	clients           int
	s                 stats.Summary
	cpu               cpuUse
	db                dbXacts
}

// renderLoad writes the tables of one bench/load.sh run.
func renderLoad(w io.Writer, dir string) error {
	meta, err := os.ReadFile(filepath.Join(dir, "meta.md"))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s\n", meta)

	var cases []loadCase
	ghz := map[string]stats.Summary{} // "backend/rpc/clients"
	for _, b := range loadBackends {
		for _, rpc := range loadRPCs {
			for _, c := range loadClients {
				base := filepath.Join(dir, "ghz", fmt.Sprintf("%s-%s-c%d", b, rpc, c))
				lc, ok, err := readCase(base, readGhz)
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				lc.backend, lc.rpc, lc.clients = b, rpc, c
				ghz[fmt.Sprintf("%s/%s/%d", b, rpc, c)] = lc.s
				cases = append(cases, lc)
			}
		}
	}
	pg := map[int]stats.Summary{}
	opa := map[int]stats.Summary{}
	opaCPU := map[int]cpuUse{}
	for _, c := range loadClients {
		s, ok, err := optional(readPgbench(filepath.Join(dir, "pgbench", fmt.Sprintf("out-c%d.txt", c)),
			filepath.Join(dir, "pgbench", fmt.Sprintf("log-c%d", c))))
		if err != nil {
			return err
		}
		if ok {
			pg[c] = s
		}
		o, ok, err := optional(readHey(filepath.Join(dir, "hey", fmt.Sprintf("opa-c%d.txt", c))))
		if err != nil {
			return err
		}
		if ok {
			opa[c] = o
			if opaCPU[c], err = readCPU(filepath.Join(dir, "hey", fmt.Sprintf("opa-c%d.cpu", c))); err != nil {
				return err
			}
		}
	}

	var rows [][]string
	for _, c := range cases {
		if c.rpc == "evaluate" {
			o, oc := opa[c.clients], opaCPU[c.clients]
			mine, theirs := c.cpu.Server/c.s.PerSec, oc.Server/o.PerSec
			rows = append(rows, append(append([]string{c.backend, strconv.Itoa(c.clients)}, summaryCells(c.s)...),
				rate(o.PerSec), ratio(c.s.PerSec, o.PerSec), perCall(c.cpu.Server, c.s.PerSec),
				perCall(oc.Server, o.PerSec), ratio(theirs, mine), cores(c.cpu.Generator), cores(oc.Generator)))
		}
	}
	fmt.Fprintln(w, "### Evaluate over gRPC (ghz), beside OPA's REST API (hey) in the same run")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Throughput is the machine's: server and load generator share its cores, so the columns")
	fmt.Fprintln(w, "after the ratio give each server's CPU per request (from /proc) and the cores each")
	fmt.Fprintln(w, "generator kept busy. \"OPA ÷ Agate CPU\" above 1× means Agate spends less per request.")
	fmt.Fprintln(w)
	table(w, []string{"backend", "clients", "calls/s", "p50 ms", "p90 ms", "p99 ms", "errors", "OPA REST req/s",
		"Evaluate ÷ OPA", "Agate CPU µs/call", "OPA CPU µs/req", "OPA ÷ Agate CPU", "ghz cores", "hey cores"}, rows)

	rows = nil
	for _, c := range cases {
		if c.rpc == "evaluate" {
			continue
		}
		var limit float64
		if c.backend == "postgres" {
			limit = pg[c.clients].PerSec
		}
		o := opa[c.clients].PerSec
		rows = append(rows, append(append([]string{c.backend, decideIDs[c.rpc], strconv.Itoa(c.clients)}, summaryCells(c.s)...),
			rate(limit), ratio(c.s.PerSec, limit), rate(o), ratio(c.s.PerSec, o)))
	}
	fmt.Fprintln(w, "### Decide over gRPC (ghz), beside pgbench's limit and OPA's REST API in the same run")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "pgbench TPS is the limit of one transaction per decision (PostgreSQL only); OPA REST")
	fmt.Fprintln(w, "records nothing (the stretch target).")
	fmt.Fprintln(w)
	table(w, []string{"backend", "job ids", "clients", "Decide/s", "p50 ms", "p90 ms", "p99 ms", "errors",
		"pgbench TPS", "Decide ÷ pgbench", "OPA REST req/s", "Decide ÷ OPA"}, rows)

	rows = nil
	for _, c := range loadClients {
		s, ok := pg[c]
		if !ok {
			continue
		}
		rows = append(rows, []string{strconv.Itoa(c), num(s.PerSec), msec(s.P50), msec(s.P90), msec(s.P99), num(float64(s.Errors))})
	}
	fmt.Fprintln(w, "### pgbench: one evidence-shaped row per SERIALIZABLE transaction, same cluster")
	fmt.Fprintln(w)
	table(w, []string{"clients", "TPS", "p50 ms", "p90 ms", "p99 ms", "failed"}, rows)

	var pipes []loadCase
	pipe := map[string]stats.Summary{}
	rows = nil
	for _, b := range loadBackends {
		for _, ids := range []string{"random", "sequential"} {
			name := b + "-c16"
			if ids == "sequential" {
				name = b + "-seq-c16"
			}
			var r pipelineResult
			lc, ok, err := readCase(filepath.Join(dir, "pipeline", name), func(p string) (stats.Summary, error) {
				var err error
				r, err = readPipeline(p)
				return r.Jobs, err
			})
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			lc.backend, lc.rpc, lc.ids, lc.clients = b, "pipeline", ids, r.Clients
			pipes = append(pipes, lc)
			if ids == "random" {
				pipe[b] = r.Jobs
			}
			// Three calls, each one transaction: pgbench's TPS ÷ 3 bounds jobs/s.
			var limit float64
			if b == "postgres" {
				limit = pg[r.Clients].PerSec / 3
			}
			rows = append(rows, append(append([]string{b, ids, strconv.Itoa(r.Clients)}, summaryCells(r.Jobs)...),
				msec(r.Decide.P99), msec(r.Approve.P99), msec(r.Publish.P99), rate(limit), ratio(r.Jobs.PerSec, limit)))
		}
	}
	fmt.Fprintln(w, "### Decide → Approve → Publish pipeline (bench/pipeline)")
	fmt.Fprintln(w)
	table(w, []string{"backend", "job ids", "clients", "jobs/s", "job p50 ms", "job p90 ms", "job p99 ms", "failed jobs",
		"Decide p99 ms", "Approve p99 ms", "Publish p99 ms", "pgbench TPS ÷ 3", "jobs/s ÷ that"}, rows)

	rows = nil
	all := append(append([]loadCase{}, cases...), pipes...)
	for _, c := range loadClients {
		if oc := opaCPU[c]; oc.Server > 0 {
			all = append(all, loadCase{backend: "–", rpc: "opa", clients: c, s: opa[c], cpu: oc})
		}
	}
	for _, c := range all {
		what := rpcNames[c.rpc]
		if c.rpc == "pipeline" {
			what = "pipeline, " + c.ids + " ids"
		}
		rows = append(rows, append(append([]string{c.backend, what, strconv.Itoa(c.clients)}, c.cpu.cells()...),
			perCall(c.cpu.Server, c.s.PerSec), c.db.perCall(c.s.OK, c.db.Commits), c.db.perCall(c.s.OK, c.db.Rollbacks)))
	}
	fmt.Fprintln(w, "### Where the time goes: CPU (from /proc) and PostgreSQL transactions (pg_stat_database)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Cores kept busy during each case by `agate serve`, by the load generator, and by the whole")
	fmt.Fprintln(w, "machine (the rest is the database and anything else running); per successful call (or job).")
	fmt.Fprintln(w)
	table(w, []string{"backend", "case", "clients", "agate cores", "generator cores", "machine busy cores",
		"agate CPU µs per call", "DB commits per call", "DB rollbacks per call"}, rows)

	rss := map[string]rssSamples{}
	rows = nil
	for _, b := range loadBackends {
		for _, rpc := range loadRPCs {
			r, ok, err := optional(readRSS(filepath.Join(dir, "rss", fmt.Sprintf("%s-%s-c64.txt", b, rpc))))
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			rss[b+"/"+rpc] = r
			atMinute := "–" // samples are 0.5 s apart
			if len(r) > 120 {
				atMinute = mb(r[120])
			}
			rows = append(rows, []string{b, rpcNames[rpc], "64", strconv.Itoa(len(r)), mb(r[0]), atMinute, mb(r.peak()), mb(r[len(r)-1])})
		}
	}
	fmt.Fprintln(w, "### Resident memory of `agate serve` at 64 clients (/proc/PID/status VmRSS)")
	fmt.Fprintln(w)
	table(w, []string{"backend", "RPC", "clients", "samples", "first MB", "after 1 min MB", "peak MB", "last MB"}, rows)
	for _, b := range loadBackends {
		for _, rpc := range loadRPCs {
			if m := rss[b+"/"+rpc].minuteMeans(); len(m) > 1 {
				fmt.Fprintf(w, "%s, %s: mean RSS by minute %s MB.\n\n", b, rpcNames[rpc], strings.Join(m, ", "))
			}
		}
	}

	var peak float64
	for _, r := range rss {
		peak = max(peak, r.peak())
	}
	d64 := ghz["postgres/decide/64"]
	e16, e64 := ghz["sqlite/evaluate/16"], ghz["sqlite/evaluate/64"]
	fmt.Fprintln(w, "### Targets")
	fmt.Fprintln(w)
	table(w, []string{"target", "measured", "verdict"}, [][]string{
		verdict("Evaluate, 16 clients ≥ 2× OPA REST (SQLite run)", e16.PerSec/opa[16].PerSec, 2, "×", true, e16.OK > 0 && opa[16].PerSec > 0),
		verdict("Evaluate, 64 clients ≥ 2× OPA REST (SQLite run)", e64.PerSec/opa[64].PerSec, 2, "×", true, e64.OK > 0 && opa[64].PerSec > 0),
		verdict("Evaluate, 16 clients p99 ≤ 2 ms (SQLite run)", e16.P99, 2, " ms", false, e16.OK > 0),
		verdict("Decide, PostgreSQL, 64 clients ≥ 2× pgbench TPS", d64.PerSec/pg[64].PerSec, 2, "×", true, pg[64].PerSec > 0),
		verdict("Decide, PostgreSQL, 64 clients p99 ≤ 25 ms", d64.P99, 25, " ms", false, d64.OK > 0),
		verdict("Decide, PostgreSQL, 64 clients ≥ OPA REST (stretch)", d64.PerSec/opa[64].PerSec, 1, "×", true, opa[64].PerSec > 0),
		verdict("Decide, SQLite, 64 clients ≥ 5,000/s", ghz["sqlite/decide/64"].PerSec, 5000, "/s", true, ghz["sqlite/decide/64"].OK > 0),
		verdict("Pipeline, PostgreSQL, 16 clients ≥ 1,000 jobs/s", pipe["postgres"].PerSec, 1000, " jobs/s", true, pipe["postgres"].OK > 0),
		verdict("RSS at 64 clients < 200 MB (peak of all runs)", peak/1024, 200, " MB", false, peak > 0),
	})
	return nil
}

// readCase reads one case's result with read, and the .cpu and .pg files beside it.
func readCase(base string, read func(string) (stats.Summary, error)) (loadCase, bool, error) {
	s, ok, err := optional(read(base + ".json"))
	if err != nil || !ok {
		return loadCase{}, ok, err
	}
	lc := loadCase{s: s}
	if lc.cpu, err = readCPU(base + ".cpu"); err != nil {
		return lc, false, err
	}
	if lc.db, err = readDBXacts(base + ".pg"); err != nil {
		return lc, false, err
	}
	return lc, true, nil
}

// optional turns a missing file into ok=false, so a partial run still renders.
func optional[T any](v T, err error) (T, bool, error) {
	if errors.Is(err, fs.ErrNotExist) {
		return v, false, nil
	}
	return v, err == nil, err
}

func summaryCells(s stats.Summary) []string {
	return []string{num(s.PerSec), msec(s.P50), msec(s.P90), msec(s.P99), num(float64(s.Errors))}
}

// verdict says whether got meets want (at least want when atLeast, else at
// most), and by how much it misses.
func verdict(target string, got, want float64, unit string, atLeast, measured bool) []string {
	if !measured {
		return []string{target, "not measured", "–"}
	}
	g := strconv.FormatFloat(got, 'f', 2, 64) + unit
	if atLeast && got >= want || !atLeast && got <= want {
		return []string{target, g, "met"}
	}
	if atLeast {
		return []string{target, g, fmt.Sprintf("missed: %.0f%% of the target", 100*got/want)}
	}
	return []string{target, g, fmt.Sprintf("missed: %.1f× the limit", got/want)}
}

// pipelineResult is what bench/pipeline prints.
type pipelineResult struct {
	Clients                        int
	Jobs, Decide, Approve, Publish stats.Summary
}

func readPipeline(path string) (pipelineResult, error) {
	var r pipelineResult
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	return r, jsonUnmarshal(path, b, &r)
}

// rssSamples are VmRSS readings in kB, in the order taken.
type rssSamples []float64

func (r rssSamples) peak() float64 {
	var p float64
	for _, v := range r {
		p = max(p, v)
	}
	return p
}

// minuteMeans are the mean RSS of each whole minute of samples (0.5 s apart), in MB.
func (r rssSamples) minuteMeans() []string {
	var out []string
	for i := 0; i+120 <= len(r); i += 120 {
		var sum float64
		for _, v := range r[i : i+120] {
			sum += v
		}
		out = append(out, mb(sum/120))
	}
	return out
}

func readRSS(path string) (rssSamples, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r rssSamples
	for _, f := range strings.Fields(string(b)) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a number of kB", path, f)
		}
		r = append(r, v)
	}
	if len(r) == 0 {
		return nil, fmt.Errorf("%s: no samples", path)
	}
	return r, nil
}

func mb(kb float64) string { return strconv.FormatFloat(kb/1024, 'f', 1, 64) }
