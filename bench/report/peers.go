package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/agate-pdp/agate/bench/internal/stats"
)

// The engine benchmarks of bench/peers are named
// BenchmarkEngines/<policy>/<job>/<engine>.
var (
	peerPolicies = []string{"reference", "rules1k", "rules10k"}
	peerJobs     = []string{"match", "nomatch"}
)

// renderPeers writes the tables of one bench/peers.sh run.
func renderPeers(w io.Writer, dir string) error {
	meta, err := os.ReadFile(filepath.Join(dir, "meta.md"))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s\n", meta)
	bench, err := readGoBench(filepath.Join(dir, "gotest.txt"))
	if err != nil {
		return err
	}
	var rows [][]string
	var worstNs, worstAllocs, worstRatio float64
	worstRatio = -1
	for _, p := range peerPolicies {
		for _, j := range peerJobs {
			name := "BenchmarkEngines/" + p + "/" + j + "/"
			a, o, op := bench[name+"agate"], bench[name+"opa"], bench[name+"opa-parsed"]
			if a.Runs == 0 {
				continue
			}
			rows = append(rows, []string{p + "/" + j, ns(a.NsPerOp), num(a.AllocsPerOp), ns(o.NsPerOp), num(o.AllocsPerOp),
				ratio(o.NsPerOp, a.NsPerOp), ns(op.NsPerOp), num(op.AllocsPerOp), ratio(op.NsPerOp, a.NsPerOp)})
			if p == "rules1k" {
				continue // the targets name the reference policy and 10,000 rules
			}
			worstNs, worstAllocs = max(worstNs, a.NsPerOp), max(worstAllocs, a.AllocsPerOp)
			if r := op.NsPerOp / a.NsPerOp; op.Runs > 0 && (worstRatio < 0 || r < worstRatio) {
				worstRatio = r
			}
		}
	}
	fmt.Fprintln(w, "### Engine: Agate's Evaluate against OPA's prepared query (median of every -count run)")
	fmt.Fprintln(w)
	table(w, []string{"policy/job", "Agate ns/op", "Agate allocs/op", "OPA ns/op", "OPA allocs/op", "OPA ÷ Agate",
		"OPA parsed-input ns/op", "allocs/op", "OPA parsed ÷ Agate"}, rows)

	rows = nil
	agate, opa := map[int]stats.Summary{}, map[int]stats.Summary{}
	for _, c := range loadClients {
		ga := filepath.Join(dir, "ghz", fmt.Sprintf("evaluate-c%d", c))
		ho := filepath.Join(dir, "hey", fmt.Sprintf("opa-c%d", c))
		a, okA, err := optional(readGhz(ga + ".json"))
		if err != nil {
			return err
		}
		o, okO, err := optional(readHey(ho + ".txt"))
		if err != nil {
			return err
		}
		if !okA && !okO {
			continue
		}
		ca, err := readCPU(ga + ".cpu")
		if err != nil {
			return err
		}
		co, err := readCPU(ho + ".cpu")
		if err != nil {
			return err
		}
		agate[c], opa[c] = a, o
		rows = append(rows, []string{strconv.Itoa(c), num(a.PerSec), msec(a.P50), msec(a.P90), msec(a.P99), num(float64(a.Errors)),
			perCall(ca.Server, a.PerSec), perCall(ca.Generator, a.PerSec), num(o.PerSec), msec(o.P50), msec(o.P90),
			msec(o.P99), num(float64(o.Errors)), perCall(co.Server, o.PerSec), perCall(co.Generator, o.PerSec),
			cores(ca.Machine) + " / " + cores(co.Machine), ratio(a.PerSec, o.PerSec)})
	}
	fmt.Fprintln(w, "### Agate `Evaluate` over gRPC (ghz) against OPA's REST data API (hey)")
	fmt.Fprintln(w)
	table(w, []string{"clients", "Agate calls/s", "p50 ms", "p90 ms", "p99 ms", "errors", "Agate CPU µs/call",
		"ghz CPU µs/call", "OPA req/s", "p50 ms", "p90 ms", "p99 ms", "errors", "OPA CPU µs/req", "hey CPU µs/req",
		"machine busy, cores (Agate / OPA run)", "Agate ÷ OPA"}, rows)

	fmt.Fprintln(w, "### Targets")
	fmt.Fprintln(w)
	table(w, []string{"target", "measured", "verdict"}, [][]string{
		verdict("Engine ≤ 1 µs/op (reference and 10,000 rules; slowest median)", worstNs, 1000, " ns", false, worstNs > 0),
		verdict("Engine ≤ 2 allocs/op (most of any case)", worstAllocs, 2, " allocs", false, worstNs > 0),
		verdict("Engine ≥ 30× OPA's prepared eval (smallest ratio, parsed input)", worstRatio, 30, "×", true, worstRatio > 0),
		verdict("Evaluate ≥ 2× OPA REST at 16 clients", agate[16].PerSec/opa[16].PerSec, 2, "×", true, opa[16].PerSec > 0),
		verdict("Evaluate ≥ 2× OPA REST at 64 clients", agate[64].PerSec/opa[64].PerSec, 2, "×", true, opa[64].PerSec > 0),
		verdict("Evaluate p99 ≤ 2 ms at 16 clients", agate[16].P99, 2, " ms", false, agate[16].OK > 0),
	})
	return nil
}

// ns formats nanoseconds per operation.
func ns(f float64) string {
	switch {
	case f == 0:
		return "–"
	case f < 10_000:
		return num(f)
	case f < 10_000_000:
		return strconv.FormatFloat(f/1000, 'f', 1, 64) + " µs"
	default:
		return strconv.FormatFloat(f/1e6, 'f', 1, 64) + " ms"
	}
}
