package canonical

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
)

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestJobHashEquivalentInputs(t *testing.T) {
	t.Parallel()
	base, err := JobHash("finance.payment.execute", "agent-7", map[string]any{"env": "production"},
		[]byte(`{"amount":1250.5,"currency":"EUR","invoice":"INV-1001"}`))
	if err != nil {
		t.Fatal(err)
	}
	same := []struct {
		name    string
		labels  map[string]any
		payload string
	}{
		{"reordered payload with blanks", map[string]any{"env": "production"},
			"{ \"invoice\" : \"INV-1001\",\n\"currency\":\"EUR\", \"amount\": 1250.50 }"},
		{"escaped payload strings", map[string]any{"env": "production"},
			`{"amount":1.2505e3,"currency":"\u0045UR","invoice":"INV\u002d1001"}`},
		{"label as RawMessage", map[string]any{"env": json.RawMessage(`"production"`)},
			`{"amount":1250.5,"currency":"EUR","invoice":"INV-1001"}`},
	}
	for _, tt := range same {
		got, err := JobHash("finance.payment.execute", "agent-7", tt.labels, []byte(tt.payload))
		if err != nil || got != base {
			t.Errorf("%s: %s, %v; want %s", tt.name, got, err, base)
		}
	}
	differ := []struct {
		name, topic, actor string
		labels             map[string]any
		payload            string
	}{
		{"topic", "finance.payment.refund", "agent-7", map[string]any{"env": "production"}, `{"amount":1250.5,"currency":"EUR","invoice":"INV-1001"}`},
		{"actor", "finance.payment.execute", "agent-8", map[string]any{"env": "production"}, `{"amount":1250.5,"currency":"EUR","invoice":"INV-1001"}`},
		{"label", "finance.payment.execute", "agent-7", map[string]any{"env": "staging"}, `{"amount":1250.5,"currency":"EUR","invoice":"INV-1001"}`},
		{"label type", "finance.payment.execute", "agent-7", map[string]any{"env": "production", "n": "1"}, `{"amount":1250.5,"currency":"EUR","invoice":"INV-1001"}`},
		{"amount", "finance.payment.execute", "agent-7", map[string]any{"env": "production"}, `{"amount":1250.51,"currency":"EUR","invoice":"INV-1001"}`},
	}
	seen := map[string]string{base: "base"}
	for _, tt := range differ {
		got, err := JobHash(tt.topic, tt.actor, tt.labels, []byte(tt.payload))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if prev, ok := seen[got]; ok {
			t.Errorf("%s hashes like %s: %s", tt.name, prev, got)
		}
		seen[got] = tt.name
	}
}

func TestJobHashEmptyLabelsAndPayload(t *testing.T) {
	t.Parallel()
	want := sha256Hex(`{"actor":"a","labels":{},"payload":{},"topic":"t"}`)
	for _, tt := range []struct {
		name    string
		labels  map[string]any
		payload []byte
	}{
		{"nil", nil, nil},
		{"empty", map[string]any{}, []byte{}},
		{"explicit", nil, []byte(" {} ")},
	} {
		if got, err := JobHash("t", "a", tt.labels, tt.payload); err != nil || got != want {
			t.Errorf("%s: %s, %v; want %s", tt.name, got, err, want)
		}
	}
}

func TestJobHashRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		topic, actor string
		labels       map[string]any
		payload      string
		path, msg    string
	}{
		{"payload array", "t", "a", nil, `[1]`, "payload", "must be a JSON object"},
		{"payload null", "t", "a", nil, `null`, "payload", "must be a JSON object"},
		{"payload blank", "t", "a", nil, ` `, "payload", "must be a JSON object"},
		{"payload inexact number", "t", "a", nil, `{"items":[{},{},{"amount":9007199254740993}]}`,
			"payload.items[2].amount", "number 9007199254740993 cannot be represented exactly as an IEEE 754 double"},
		{"payload syntax", "t", "a", nil, `{"a":}`, "payload.a", "invalid JSON"},
		{"payload trailing data", "t", "a", nil, `{}x`, "payload", "after the top-level value"},
		{"payload duplicate key", "t", "a", nil, `{"k":1,"k":2}`, "payload.k", "duplicate object key"},
		{"label NaN", "t", "a", map[string]any{"env": math.NaN()}, `{}`, "labels.env", "has no JSON form"},
		{"label bytes", "t", "a", map[string]any{"env": []byte("x")}, `{}`, "labels.env", "ambiguous"},
		{"label big int", "t", "a", map[string]any{"n": int64(1<<53 + 1)}, `{}`, "labels.n", "cannot be represented exactly"},
		{"label invalid UTF-8", "t", "a", map[string]any{"env": "\xff"}, `{}`, "labels.env", "invalid UTF-8"},
		{"topic invalid UTF-8", "\xff", "a", nil, `{}`, "topic", "invalid UTF-8"},
		{"actor invalid UTF-8", "t", "\xc3", nil, `{}`, "actor", "invalid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := JobHash(tt.topic, tt.actor, tt.labels, []byte(tt.payload))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("JobHash = %q, %v; want *Error", got, err)
			}
			if got != "" || ce.Path != tt.path || !strings.Contains(ce.Msg, tt.msg) {
				t.Errorf("JobHash = %q, Path %q, Msg %q; want Path %q, Msg containing %q", got, ce.Path, ce.Msg, tt.path, tt.msg)
			}
		})
	}
}

// TestJobHashConcurrent shares pooled state across goroutines; run with -race.
func TestJobHashConcurrent(t *testing.T) {
	t.Parallel()
	labels := map[string]any{"env": "production", "destination": "external", "scope_validated": true}
	want, err := JobHash("finance.payment.execute", "agent-7", labels, []byte(paymentPayload))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8*50)
	for range 8 {
		wg.Go(func() {
			for range 50 {
				got, err := JobHash("finance.payment.execute", "agent-7", labels, []byte(paymentPayload))
				if err != nil || got != want {
					errs <- got
				}
				// Interleave refusals, which leave pooled state half-used.
				if _, err := JobHash("t", "a", nil, []byte(`{"b":{"c":[1e400]},"a":1}`)); err == nil {
					errs <- "refusal accepted"
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("concurrent JobHash: %q, want %s", e, want)
	}
}
