// Package postgres is the store backend for PostgreSQL and CockroachDB, over a pgx v5
// pool. Every write runs in a SERIALIZABLE transaction that is retried whole, in a fresh
// transaction, on a serialization failure or deadlock at any statement or at COMMIT (the
// retry loop is cockroach-go's ExecuteCtx; its savepoint-based ExecuteTx is not used,
// because on PostgreSQL it retries inside a stale snapshot and ignores COMMIT errors).
// All SQL is sqlstore's; this package adds the pool, the transactions and the error
// classification.
package postgres
