// Command report turns the raw output of a benchmark run (ghz JSON, hey and
// pgbench text, pgbench's per-transaction logs, go test -bench output, RSS
// samples) into the markdown tables of BENCHMARKS.md, with every ratio the
// targets are stated in.
//
//	report load  DIR   # what bench/load.sh left in DIR
//	report peers DIR   # what bench/peers.sh left in DIR
package main
