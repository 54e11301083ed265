package main

import (
	"bufio"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// benchLine matches one result line of go test -bench -benchmem; the name
// loses its -GOMAXPROCS suffix.
var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+([0-9.]+) ns/op(?:\s+([0-9.]+) B/op\s+([0-9.]+) allocs/op)?`)

// benchResult is the median of every run (-count) of one benchmark.
type benchResult struct {
	NsPerOp, BytesPerOp, AllocsPerOp float64
	Runs                             int
}

// readGoBench reads go test -bench output and returns each benchmark's
// medians by name.
func readGoBench(path string) (map[string]benchResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	runs := map[string][][3]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		var v [3]float64
		for i, s := range m[2:] {
			v[i], _ = strconv.ParseFloat(s, 64)
		}
		runs[m[1]] = append(runs[m[1]], v)
	}
	out := map[string]benchResult{}
	for name, rs := range runs {
		med := func(i int) float64 {
			col := make([]float64, len(rs))
			for j, r := range rs {
				col[j] = r[i]
			}
			return median(col)
		}
		out[name] = benchResult{NsPerOp: med(0), BytesPerOp: med(1), AllocsPerOp: med(2), Runs: len(rs)}
	}
	return out, sc.Err()
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if n := len(v); n%2 == 1 {
		return v[n/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
