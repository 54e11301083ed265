package jobs_test

import (
	"context"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/storetest"
)

// TestInsider2WatchForgedCursor: a watch cursor is "w1:" and a time in base64, neither
// signed nor bounded. Any authenticated caller, with standing on nothing, can forge one
// at the epoch and make the server read the whole evidence history (10,000 events and a
// job read per distinct job each poll) for every stream it opens, again and again. A
// cursor the service never issued, or one older than it keeps resumable, should be
// refused before any read.
func TestInsider2WatchForgedCursor(t *testing.T) {
	t.Parallel()
	_, rs := watchReplicas(t, []store.Store{storetest.OpenSQLite(t)})
	e := rs[0]
	for range 3 {
		e.decide(t, payment)
	}
	nobody := jobs.Principal{ID: "nobody@example.com", Roles: []string{"no-such-role"}}
	for _, at := range []string{"1", "0"} {
		t.Run("w1:"+at, func(t *testing.T) {
			forged := base64.RawURLEncoding.EncodeToString([]byte("w1:" + at))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stop := errors.New("stop")
			items := 0
			err := e.svc.Watch(ctx, nobody, forged, func(jobs.WatchItem) error {
				items++
				return stop
			})
			if items > 0 || errors.Is(err, stop) {
				t.Fatalf("a forged cursor at %s µs after the epoch was accepted and the history read (err %v)", at, err)
			}
			wantField(t, err, "cursor")
		})
	}
}
