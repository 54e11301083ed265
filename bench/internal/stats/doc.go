// Package stats summarises latency samples the way every benchmark table of
// Agate reports them: count, throughput and the 50th, 90th and 99th
// percentiles.
package stats
