package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/agate-pdp/agate/bench/internal/stats"
)

// ghzReport is the part of ghz's JSON output (-O json) that the tables use.
type ghzReport struct {
	Count   int64         `json:"count"`
	Total   time.Duration `json:"total"`
	Details []struct {
		Timestamp time.Time     `json:"timestamp"`
		Latency   time.Duration `json:"latency"`
		Status    string        `json:"status"`
		Error     string        `json:"error"`
	} `json:"details"`
}

// cutOff says whether a failed call was in flight when ghz closed its
// connections at the end of the run (it failed within a second of the last
// call, because a connection closed): such calls are neither counted nor timed.
func cutOff(status, msg string, at, end time.Time) bool {
	closing := status == "Canceled" && strings.Contains(msg, "client connection is closing") ||
		status == "Unavailable" && strings.Contains(msg, "transport is closing")
	return closing && end.Sub(at) < time.Second
}

// readGhz summarises a ghz JSON report from its per-request details, so the
// throughput and percentiles count successful calls only; failed calls are
// counted as errors, except those cut off by the end of the run.
func readGhz(path string) (stats.Summary, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return stats.Summary{}, err
	}
	var r ghzReport
	if err := json.Unmarshal(b, &r); err != nil {
		return stats.Summary{}, fmt.Errorf("%s: %w", path, err)
	}
	n := int64(len(r.Details))
	if n > r.Count || n == 0 && r.Count > 0 {
		return stats.Summary{}, fmt.Errorf("%s: %d details for %d calls", path, n, r.Count)
	}
	// ghz keeps the details of the first million calls only: a longer run (the soak) is
	// summarised from those, over the share of the run they took at its mean rate.
	elapsed := r.Total
	if n < r.Count {
		elapsed = time.Duration(float64(r.Total) * float64(n) / float64(r.Count))
	}
	var end time.Time
	for _, d := range r.Details {
		if d.Timestamp.After(end) {
			end = d.Timestamp
		}
	}
	var lat []time.Duration
	var errs int64
	for _, d := range r.Details {
		switch {
		case d.Status == "OK":
			lat = append(lat, d.Latency)
		case !cutOff(d.Status, d.Error, d.Timestamp, end):
			errs++
		}
	}
	return stats.Summarize(lat, errs, elapsed), nil
}
