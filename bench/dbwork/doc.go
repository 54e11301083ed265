// Command dbwork measures the database work behind each Agate call on PostgreSQL:
// transactions, statements, rows, the key-value entries a distributed SQL database would
// write for them (primary rows and secondary-index entries added or removed), their
// bytes, and the WAL PostgreSQL wrote. It starts `agate serve` itself, drives each call
// over gRPC, and reads pg_stat_statements, pg_current_wal_lsn() and every index's keys
// before and after each phase. bench/dbwork.sh runs it on a throwaway cluster; see
// BENCHMARKS.md, "Scale on paper", for what the figures are used for.
package main
