package stats

import (
	"math"
	"slices"
	"time"
)

// Summary is one benchmark case: how many operations succeeded and failed,
// over how long, and the latency percentiles of the successful ones.
type Summary struct {
	OK      int64   `json:"ok"`
	Errors  int64   `json:"errors"`
	Seconds float64 `json:"seconds"`
	// PerSec counts successful operations only.
	PerSec float64 `json:"per_sec"`
	P50    float64 `json:"p50_ms"`
	P90    float64 `json:"p90_ms"`
	P99    float64 `json:"p99_ms"`
}

// Summarize sorts lat in place and summarises it; errors and elapsed are
// taken as they are.
func Summarize(lat []time.Duration, errors int64, elapsed time.Duration) Summary {
	slices.Sort(lat)
	s := Summary{OK: int64(len(lat)), Errors: errors, Seconds: elapsed.Seconds()}
	if s.Seconds > 0 {
		s.PerSec = float64(s.OK) / s.Seconds
	}
	s.P50 = ms(Percentile(lat, 50))
	s.P90 = ms(Percentile(lat, 90))
	s.P99 = ms(Percentile(lat, 99))
	return s
}

// Percentile returns the nearest-rank p-th percentile of sorted samples
// (0 when there are none): the smallest sample that at least p percent of
// the samples do not exceed.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
