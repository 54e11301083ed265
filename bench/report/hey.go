package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/agate-pdp/agate/bench/internal/stats"
)

var (
	heyTotal  = regexp.MustCompile(`^\s*Total:\s+([0-9.]+) secs`)
	heyPct    = regexp.MustCompile(`^\s*(\d+)%+ in ([0-9.]+) secs`)
	heyStatus = regexp.MustCompile(`^\s*\[(\d+)\]\s+(\d+) responses`)
	heyError  = regexp.MustCompile(`^\s*\[(\d+)\]\s+\S`)
)

// readHey summarises hey's text output (v0.1.5 prints "50%% in …"). hey gives
// latencies in seconds with four decimals, so its percentiles are good to
// 0.1 ms. Non-200 responses and transport errors count as errors; throughput
// counts 200s only.
func readHey(path string) (stats.Summary, error) {
	f, err := os.Open(path)
	if err != nil {
		return stats.Summary{}, err
	}
	defer f.Close()
	var s stats.Summary
	section := ""
	pct := map[int]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if t := strings.TrimSpace(line); strings.HasSuffix(t, ":") && !strings.HasPrefix(line, " ") {
			section = t
			continue
		}
		switch {
		case section == "Summary:" && heyTotal.MatchString(line):
			s.Seconds, _ = strconv.ParseFloat(heyTotal.FindStringSubmatch(line)[1], 64)
		case section == "Latency distribution:" && heyPct.MatchString(line):
			m := heyPct.FindStringSubmatch(line)
			p, _ := strconv.Atoi(m[1])
			v, _ := strconv.ParseFloat(m[2], 64)
			pct[p] = v * 1000
		case section == "Status code distribution:" && heyStatus.MatchString(line):
			m := heyStatus.FindStringSubmatch(line)
			n, _ := strconv.ParseInt(m[2], 10, 64)
			if m[1] == "200" {
				s.OK += n
			} else {
				s.Errors += n
			}
		case section == "Error distribution:" && heyError.MatchString(line):
			n, _ := strconv.ParseInt(heyError.FindStringSubmatch(line)[1], 10, 64)
			s.Errors += n
		}
	}
	if err := sc.Err(); err != nil {
		return s, err
	}
	if s.Seconds == 0 || s.OK == 0 {
		return s, fmt.Errorf("%s: no total time or no 200 responses: not hey output?", path)
	}
	s.PerSec = float64(s.OK) / s.Seconds
	s.P50, s.P90, s.P99 = pct[50], pct[90], pct[99]
	return s, nil
}
