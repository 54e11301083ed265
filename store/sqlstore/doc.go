// Package sqlstore owns the SQL that every backend shares: the schema migrations, the
// statements of store.Tx, the transaction retry loop and the mapping of driver errors to
// store errors. A backend supplies only a Dialect (how its errors are classified, the
// row-lock clause, the bytes column type) and adapts its transaction to Querier, so no
// statement is written twice. The SQL is the subset PostgreSQL, CockroachDB and SQLite
// agree on, with $N placeholders throughout.
package sqlstore
