package canonical

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestAppend(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"nil", nil, `null`},
		{"bools", []any{true, false}, `[true,false]`},
		{"string escapes", "a\"\\\n\x01\u2028é", "\"a\\\"\\\\\\n\\u0001\u2028é\""},
		{"float64", 1250.5, `1250.5`},
		{"minus zero", math.Copysign(0, -1), `0`},
		{"float64 large", 1e21, `1e+21`},
		{"float32", float32(0.5), `0.5`},
		{"float32 widened exactly", float32(0.1), `0.10000000149011612`},
		{"ints", []any{int(-1), int8(-8), int16(16), int32(-32), int64(1 << 53)}, `[-1,-8,16,-32,9007199254740992]`},
		{"uints", []any{uint(1), uint8(8), uint16(16), uint32(32), uint64(1 << 53)}, `[1,8,16,32,9007199254740992]`},
		{"json.Number", json.Number("1.50"), `1.5`},
		{"json.Number exponent", json.Number("1E21"), `1e+21`},
		{"RawMessage sorted", json.RawMessage(`{"b": 1, "a": [2.0]}`), `{"a":[2],"b":1}`},
		{"map sorted by UTF-16", map[string]any{"\ue000": 1, "\U00010000": 2, "a": 3}, "{\"a\":3,\"\U00010000\":2,\"\ue000\":1}"},
		{"map of strings", map[string]string{"z": "1", "y": "2"}, `{"y":"2","z":"1"}`},
		{"nested", map[string]any{"k": []any{map[string]any{"b": nil, "a": []string{"x"}}}}, `{"k":[{"a":["x"],"b":null}]}`},
		{"nil map", map[string]any(nil), `{}`},
		{"nil slice", []any(nil), `[]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Append([]byte("prefix:"), tt.v)
			if err != nil || string(got) != "prefix:"+tt.want {
				t.Fatalf("Append(%#v) = %q, %v; want prefix:%s", tt.v, got, err, tt.want)
			}
			// Append and Transform agree on the same value.
			if again, err := Transform(got[len("prefix:"):]); err != nil || string(again) != tt.want {
				t.Errorf("Transform(%s) = %q, %v", tt.want, again, err)
			}
		})
	}
}

func TestAppendRefuses(t *testing.T) {
	t.Parallel()
	cycle := map[string]any{}
	cycle["self"] = cycle
	type custom struct{}
	tests := []struct {
		name      string
		v         any
		path, msg string
	}{
		{"NaN", math.NaN(), "", "has no JSON form"},
		{"infinity", []any{math.Inf(-1)}, "[0]", "has no JSON form"},
		{"int64 beyond 2^53", int64(1<<53 + 1), "", "cannot be represented exactly"},
		{"max int64", int64(math.MaxInt64), "", "cannot be represented exactly"},
		{"double in long form", int64(1 << 60), "", "would change value in canonical form (1152921504606847000)"},
		{"max uint64", uint64(math.MaxUint64), "", "cannot be represented exactly"},
		{"bad json.Number", json.Number("1e"), "", "invalid number"},
		{"json.Number with tail", json.Number("1 "), "", "invalid number"},
		{"inexact json.Number", map[string]any{"n": json.Number("9007199254740993")}, "n", "cannot be represented exactly"},
		{"bad RawMessage", map[string]any{"r": json.RawMessage(`{"a":[1,}`)}, "r.a[1]", "invalid JSON"},
		{"RawMessage trailing data", []any{json.RawMessage(`1 2`)}, "[0]", "after the top-level value"},
		{"bytes", map[string]any{"b": []byte("x")}, "b", "[]byte is ambiguous"},
		{"unsupported type", []any{custom{}}, "[0]", "unsupported type canonical.custom"},
		{"invalid UTF-8 value", []string{"ok", "\xff"}, "[1]", "invalid UTF-8"},
		{"invalid UTF-8 key", map[string]string{"\xff": "v"}, `["\xff"]`, "invalid UTF-8 in object key"},
		{"cycle", cycle, strings.TrimPrefix(strings.Repeat(".self", 64), "."), "nesting deeper than 64 levels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Append([]byte("keep"), tt.v)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Append = %q, %v; want *Error", got, err)
			}
			if string(got) != "keep" {
				t.Errorf("Append returned %q on error, want dst unchanged", got)
			}
			if ce.Path != tt.path || !strings.Contains(ce.Msg, tt.msg) {
				t.Errorf("error Path %q Msg %q; want Path %q, Msg containing %q", ce.Path, ce.Msg, tt.path, tt.msg)
			}
		})
	}
}
