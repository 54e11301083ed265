package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cockroachdb/cockroach-go/v2/crdb"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/agate-pdp/agate/store"
)

// DefaultMaxAttempts bounds how often a transaction runs before ErrBusy.
const DefaultMaxAttempts = 10

// Backoff before the n-th retry is a random duration up to min(maxBackoff, minBackoff<<n):
// contenders that failed together spread out instead of colliding again.
const (
	minBackoff = 2 * time.Millisecond
	maxBackoff = 100 * time.Millisecond
)

// Run calls attempt until it succeeds, returns an error that is not retryable, or has
// been called maxAttempts times; then Run returns an error matching store.ErrBusy that
// wraps the last failure. attempt must begin, run and commit one whole transaction, so
// a retry never reuses a snapshot that failed. The loop is cockroach-go's ExecuteCtx:
// errors the dialect classes as ClassRetry (PostgreSQL's 40P01 deadlock, SQLite's BUSY)
// are presented to it as serialization failures, which it retries.
func (d *Dialect) Run(ctx context.Context, maxAttempts int, attempt func(ctx context.Context) error) error {
	if maxAttempts < 1 {
		maxAttempts = DefaultMaxAttempts
	}
	n := 0
	err := crdb.ExecuteCtx(crdb.WithMaxRetries(ctx, maxAttempts-1), func(ctx context.Context, _ ...any) error {
		if n > 0 {
			if err := sleep(ctx, backoff(n)); err != nil {
				return err
			}
		}
		n++
		err := attempt(ctx)
		if err != nil && d.Classify(err) == ClassRetry {
			trace.SpanFromContext(ctx).AddEvent("retry", trace.WithAttributes(
				attribute.Int("agate.store.attempt", n), attribute.String("error.type", "retryable")))
			return &retryable{err}
		}
		return err
	})
	trace.SpanFromContext(ctx).SetAttributes(attribute.Int("agate.store.attempts", n))
	if mre := (*crdb.MaxRetriesExceededError)(nil); errors.As(err, &mre) {
		cause := mre.Unwrap()
		if r := (*retryable)(nil); errors.As(cause, &r) {
			cause = r.err
		}
		return fmt.Errorf("%w (%s, %d attempts): %w", store.ErrBusy, d.Name, n, cause)
	}
	return err
}

// retryable marks an error for crdb's classifier, which knows only SQLSTATE 40001.
type retryable struct{ err error }

func (r *retryable) Error() string    { return r.err.Error() }
func (r *retryable) Unwrap() error    { return r.err }
func (r *retryable) SQLState() string { return "40001" }

func backoff(n int) time.Duration {
	d := maxBackoff
	if n < 16 && minBackoff<<n < maxBackoff {
		d = minBackoff << n
	}
	return rand.N(d) + time.Millisecond
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Traced runs fn, one whole transaction with its retries, in a client span named op
// (store.ReadWrite, store.Read) carrying the database system; Run adds each retry to it
// as an event and the attempt count as an attribute.
func (d *Dialect) Traced(ctx context.Context, tracer trace.Tracer, op string, fn func(ctx context.Context) error) error {
	ctx, span := tracer.Start(ctx, op, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system.name", d.System)))
	defer span.End()
	err := fn(ctx)
	if err != nil {
		span.SetStatus(codes.Error, "transaction failed")
		span.SetAttributes(attribute.String("error.type", errorType(err)))
	}
	return err
}

// errorType names a failed transaction's error by store kind, never by its text, which
// may hold data.
func errorType(err error) string {
	for _, k := range []struct {
		err  error
		name string
	}{{store.ErrBusy, "busy"}, {store.ErrUnavailable, "unavailable"}, {store.ErrConflict, "conflict"},
		{store.ErrNotFound, "not_found"}, {context.DeadlineExceeded, "deadline_exceeded"}, {context.Canceled, "canceled"}} {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return "other"
}
