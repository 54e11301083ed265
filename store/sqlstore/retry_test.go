package sqlstore

import (
	"context"
	"errors"
	"testing"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

var (
	errRetry  = errors.New("serialization failure")
	errUnique = errors.New("duplicate key")
	errCheck  = errors.New("check violation")
	errFK     = errors.New("foreign key violation")
	errDown   = errors.New("connection refused")
)

var fake = &Dialect{Name: "fake", Classify: func(err error) Class {
	switch {
	case errors.Is(err, errRetry):
		return ClassRetry
	case errors.Is(err, errUnique):
		return ClassUnique
	case errors.Is(err, errCheck):
		return ClassCheck
	case errors.Is(err, errFK):
		return ClassForeignKey
	case errors.Is(err, errDown):
		return ClassUnavailable
	}
	return ClassOther
}}

func TestRun(t *testing.T) {
	t.Parallel()
	own := errors.New("the callback's own error")
	tests := []struct {
		name      string
		max       int
		results   []error // what successive attempts return; nil after the end
		wantCalls int
		want      func(error) bool
	}{
		{"success", 3, []error{nil}, 1, func(err error) bool { return err == nil }},
		{"retried then success", 3, []error{errRetry, errRetry, nil}, 3, func(err error) bool { return err == nil }},
		{"budget exhausted", 3, []error{errRetry, errRetry, errRetry, nil}, 3, func(err error) bool {
			return errors.Is(err, store.ErrBusy) && errors.Is(err, errRetry)
		}},
		{"one attempt", 1, []error{errRetry, nil}, 1, func(err error) bool { return errors.Is(err, store.ErrBusy) }},
		{"default budget", 0, []error{errRetry, errRetry, errRetry, errRetry, errRetry, errRetry,
			errRetry, errRetry, errRetry, errRetry, nil}, DefaultMaxAttempts,
			func(err error) bool { return errors.Is(err, store.ErrBusy) }},
		{"own error as is", 3, []error{own}, 1, func(err error) bool { return err == own }},
		{"wrapped retryable", 3, []error{wrap(errRetry), nil}, 2, func(err error) bool { return err == nil }},
		{"not retryable", 3, []error{errUnique}, 1, func(err error) bool { return err == errUnique }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			calls := 0
			err := fake.Run(t.Context(), tc.max, func(context.Context) error {
				calls++
				if calls <= len(tc.results) {
					return tc.results[calls-1]
				}
				return nil
			})
			if calls != tc.wantCalls || !tc.want(err) {
				t.Errorf("Run: %d calls, err %v; want %d calls", calls, err, tc.wantCalls)
			}
		})
	}
}

func wrap(err error) error { return &wrapped{err} }

type wrapped struct{ err error }

func (w *wrapped) Error() string { return "wrapped: " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }

func TestRunStopsWhenContextEnds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	calls := 0
	err := fake.Run(ctx, 100, func(context.Context) error {
		calls++
		if calls == 2 {
			cancel()
		}
		return errRetry
	})
	if !errors.Is(err, context.Canceled) || calls != 2 {
		t.Errorf("Run: %v after %d calls, want context.Canceled after 2", err, calls)
	}
}

func TestMapError(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   error
		want error
	}{
		{errUnique, store.ErrConflict},
		{errFK, store.ErrNotFound},
		{errCheck, evidence.ErrIncomplete},
		{errDown, store.ErrUnavailable},
		{errRetry, errRetry},
	} {
		got := fake.MapError(c.in)
		if !errors.Is(got, c.want) || !errors.Is(got, c.in) {
			t.Errorf("MapError(%v) = %v, want it to match %v and wrap the driver error", c.in, got, c.want)
		}
	}
	if fake.MapError(nil) != nil {
		t.Error("MapError(nil) != nil")
	}
}
