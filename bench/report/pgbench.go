package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/agate-pdp/agate/bench/internal/stats"
)

var (
	pgbenchTPS    = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	pgbenchFailed = regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
	pgbenchDur    = regexp.MustCompile(`(?m)^duration: (\d+) s`)
)

// readPgbench summarises one pgbench run: the TPS it printed in out, and the
// latency percentiles of every transaction in the per-transaction logs (-l)
// whose names start with logPrefix.
func readPgbench(out, logPrefix string) (stats.Summary, error) {
	b, err := os.ReadFile(out)
	if err != nil {
		return stats.Summary{}, err
	}
	m := pgbenchTPS.FindSubmatch(b)
	if m == nil {
		return stats.Summary{}, fmt.Errorf("%s: no tps line", out)
	}
	tps, _ := strconv.ParseFloat(string(m[1]), 64)
	var failed int64
	if m := pgbenchFailed.FindSubmatch(b); m != nil {
		failed, _ = strconv.ParseInt(string(m[1]), 10, 64)
	}
	logs, err := filepath.Glob(logPrefix + ".*")
	if err != nil || len(logs) == 0 {
		return stats.Summary{}, fmt.Errorf("no pgbench logs %s.*", logPrefix)
	}
	var lat []time.Duration
	for _, l := range logs {
		if lat, err = appendPgbenchLog(lat, l); err != nil {
			return stats.Summary{}, err
		}
	}
	var secs float64
	if m := pgbenchDur.FindSubmatch(b); m != nil {
		secs, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	s := stats.Summarize(lat, failed, time.Duration(secs*float64(time.Second)))
	s.PerSec = tps // pgbench's own figure, which leaves out connection time
	return s, nil
}

// appendPgbenchLog reads a per-transaction log: "client_id transaction_no
// time script_no time_epoch time_us", time in microseconds. Lines of failed
// transactions have no number there and are skipped (they are counted from
// pgbench's summary).
func appendPgbenchLog(lat []time.Duration, path string) ([]time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return lat, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		us, err := strconv.ParseInt(fields[2], 10, 64)
		if err != nil {
			continue
		}
		lat = append(lat, time.Duration(us)*time.Microsecond)
	}
	return lat, sc.Err()
}
