package jobs

import (
	"context"
	"math"
	"testing"
	"time"
)

func TestMatchTopic(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		pattern, topic string
		want           bool
	}{
		{"finance.>", "finance.payment.execute", true},
		{"finance.>", "finance", false},
		{"finance.*", "finance.payment", true},
		{"finance.*", "finance.payment.execute", false},
		{"*.payment.*", "finance.payment.execute", true},
		{"*.payment.*", "finance.refund.execute", false},
		{">", "a", true},
	} {
		p, err := topicPattern(c.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := matchTopic(p, c.topic); got != c.want {
			t.Errorf("%s ~ %s = %v", c.pattern, c.topic, got)
		}
	}
	for _, bad := range []string{"a..b", "a.>.b", "fin*.x", ".a"} {
		if _, err := topicPattern(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestJobCursor(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"a", "job:with:colons", "x.y-z_1"} {
		at, got, err := decodeJobCursor(encodeJobCursor(1775037723000000, id))
		if err != nil || at != 1775037723000000 || got != id {
			t.Errorf("%s: %d %q %v", id, at, got, err)
		}
	}
	for _, bad := range []string{"!!", "bm9jb2xvbg", "eDph"} { // not base64, "nocolon", "x:a"
		if _, _, err := decodeJobCursor(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestDecodeLabels(t *testing.T) {
	t.Parallel()
	m, err := decodeLabels([]byte(`{"amount":1250.5,"env":"production","ok":true}`))
	if err != nil || m["amount"] != 1250.5 || m["env"] != "production" || m["ok"] != true || len(m) != 3 {
		t.Fatalf("%v %v", m, err)
	}
	for _, bad := range []string{`[]`, `{"a":[1]}`, `{"a":null}`, `{"a":{}}`} {
		if _, err := decodeLabels([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestCheckDecideLabels(t *testing.T) {
	t.Parallel()
	r := DecideRequest{JobID: "j", Topic: "a.b", Actor: "x", Labels: map[string]any{"n": math.Pi, "i": 3, "b": false}}
	if err := checkDecide(&r); err != nil {
		t.Fatal(err)
	}
	r.Labels["m"] = map[string]any{}
	if err := checkDecide(&r); err == nil {
		t.Fatal("a map label was accepted")
	}
}

// A batch's context has the latest of its callers' deadlines, or none when one of them
// has none; it ends only when every caller has gone.
func TestCallersContextDeadline(t *testing.T) {
	t.Parallel()
	now := time.Now()
	with := func(d time.Duration) context.Context {
		ctx, cancel := context.WithDeadline(context.Background(), now.Add(d))
		t.Cleanup(cancel)
		return ctx
	}
	ctx, stop := callersContext([]context.Context{with(time.Minute), with(time.Hour)})
	if d, ok := ctx.Deadline(); !ok || !d.Equal(now.Add(time.Hour)) {
		t.Errorf("deadline %v %v, want the latest caller's", d, ok)
	}
	stop()
	ctx, stop = callersContext([]context.Context{with(time.Minute), context.Background()})
	defer stop()
	if _, ok := ctx.Deadline(); ok {
		t.Error("a deadline although one caller has none")
	}
}

// TestCallersContextValues: a batch of one carries its caller's values (its trace span),
// but not its cancellation; a batch of several carries no caller's values.
func TestCallersContextValues(t *testing.T) {
	t.Parallel()
	type key struct{}
	caller, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "span"))
	ctx, stop := callersContext([]context.Context{caller})
	if ctx.Value(key{}) != "span" {
		t.Error("a batch of one lost its caller's values")
	}
	cancel()
	<-ctx.Done() // ends with its only caller
	stop()
	ctx, stop = callersContext([]context.Context{context.WithValue(context.Background(), key{}, "span"), context.Background()})
	defer stop()
	if ctx.Value(key{}) != nil {
		t.Error("a batch of several carries one caller's values")
	}
}
