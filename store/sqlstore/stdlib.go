package sqlstore

import (
	"context"
	"database/sql"
)

// StdQuerier adapts a database/sql transaction to Querier.
func StdQuerier(tx *sql.Tx) Querier { return stdQuerier{tx} }

type stdQuerier struct{ tx *sql.Tx }

func (q stdQuerier) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := q.tx.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (q stdQuerier) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	rows, err := q.tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return stdRows{rows}, nil
}

func (q stdQuerier) QueryRow(ctx context.Context, query string, args ...any) Row {
	return q.tx.QueryRowContext(ctx, query, args...)
}

type stdRows struct{ *sql.Rows }

// Close drops the error of sql.Rows.Close, which Err reports too.
func (r stdRows) Close() { _ = r.Rows.Close() }
