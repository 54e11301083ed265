package postgres

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/agate-pdp/agate/store/sqlstore"
)

var dialect = &sqlstore.Dialect{
	Name:      "postgres",
	System:    "postgresql",
	ForUpdate: " FOR UPDATE",
	BytesType: "BYTEA",
	// clock_timestamp, not now(): the time the statement runs, not the transaction's
	// start. CockroachDB has both, and its EXTRACT returns a decimal the cast rounds.
	NowMicros: "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)",
	Classify:  classify,
}

// classify reads SQLSTATE codes, then the ways a connection can fail.
func classify(err error) sqlstore.Class {
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) {
		switch pe.Code {
		case "40001", "40P01": // serialization_failure, deadlock_detected
			return sqlstore.ClassRetry
		case "23505":
			return sqlstore.ClassUnique
		case "23514", "23502":
			return sqlstore.ClassCheck
		case "23503":
			return sqlstore.ClassForeignKey
		case "57P01", "57P02", "57P03", "53300": // shutdown, cannot connect now, too many connections
			return sqlstore.ClassUnavailable
		}
		if strings.HasPrefix(pe.Code, "08") { // connection exception
			return sqlstore.ClassUnavailable
		}
		return sqlstore.ClassOther
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return sqlstore.ClassOther
	}
	if ce := (*pgconn.ConnectError)(nil); errors.As(err, &ce) {
		return sqlstore.ClassUnavailable
	}
	// Nothing reached the server: running the whole transaction again is safe.
	if pgconn.SafeToRetry(err) {
		return sqlstore.ClassRetry
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, pgconn.ErrConnClosed) {
		return sqlstore.ClassUnavailable
	}
	return sqlstore.ClassOther
}

// querier adapts a pgx transaction to sqlstore.Querier.
type querier struct{ tx pgx.Tx }

func (q querier) Exec(ctx context.Context, sql string, args ...any) (int64, error) {
	tag, err := q.tx.Exec(ctx, sql, args...)
	return tag.RowsAffected(), err
}

func (q querier) Query(ctx context.Context, sql string, args ...any) (sqlstore.Rows, error) {
	return q.tx.Query(ctx, sql, args...)
}

func (q querier) QueryRow(ctx context.Context, sql string, args ...any) sqlstore.Row {
	return q.tx.QueryRow(ctx, sql, args...)
}
