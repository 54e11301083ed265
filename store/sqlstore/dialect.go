package sqlstore

import "context"

// Querier runs statements inside one transaction. pgx.Tx and *sql.Tx are adapted to it.
type Querier interface {
	// Exec runs a statement and returns the number of rows it affected.
	Exec(ctx context.Context, sql string, args ...any) (int64, error)
	Query(ctx context.Context, sql string, args ...any) (Rows, error)
	// QueryRow runs a query expected to return at most one row; Scan reports
	// sql.ErrNoRows (pgx.ErrNoRows matches it too) when it returns none.
	QueryRow(ctx context.Context, sql string, args ...any) Row
}

// Rows is a result set being read.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Row is the result of QueryRow.
type Row interface {
	Scan(dest ...any) error
}

// Class is what a driver error means to the store.
type Class int

// The error classes a Dialect tells apart.
const (
	ClassOther       Class = iota // anything else: returned as is
	ClassRetry                    // serialization failure, deadlock, busy: retry the transaction
	ClassUnique                   // unique or primary key violation
	ClassCheck                    // CHECK or NOT NULL violation
	ClassForeignKey               // a referenced row is missing
	ClassUnavailable              // the database cannot be reached
)

// Dialect is what one backend's SQL differs in.
type Dialect struct {
	// Name names the backend in errors and logs.
	Name string
	// System is the OpenTelemetry db.system.name of the backend's spans.
	System string
	// ForUpdate is appended to a SELECT that locks its rows: " FOR UPDATE" where the
	// database has row locks, "" for SQLite, whose write transactions exclude each other.
	ForUpdate string
	// Anonymous writes the placeholders of statements built from parts (multi-row
	// inserts, IN lists, filters) as "?" rather than "$N". SQLite looks up each "$N" by
	// name, in a list as long as the statement's parameters, at parse and again at
	// bind: with thousands of them that was most of a batch's time. A "?" is looked up
	// nowhere.
	Anonymous bool
	// BytesType is the column type of byte strings in DDL (BYTEA, BLOB).
	BytesType string
	// NowMicros is an SQL expression for the database's current time in µs since the
	// Unix epoch, read when the statement runs.
	NowMicros string
	// Classify tells what a driver error means; nil errors are never passed.
	Classify func(error) Class
}
