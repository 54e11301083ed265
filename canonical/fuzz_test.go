package canonical

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzTransform checks that Transform never panics, accepts only valid JSON,
// emits valid JSON, is idempotent and keeps every value as encoding/json
// reads it. Seeds live in testdata/fuzz/FuzzTransform.
func FuzzTransform(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Transform(in)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %v is %T, want *Error", err, err)
			}
			return
		}
		if !json.Valid(in) {
			t.Fatalf("accepted invalid JSON %q", in)
		}
		if !json.Valid(out) {
			t.Fatalf("output %q of %q is not valid JSON", out, in)
		}
		again, err := Transform(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, out, again, err)
		}
		var vin, vout any
		if err := json.Unmarshal(in, &vin); err != nil {
			t.Fatalf("encoding/json refuses accepted input %q: %v", in, err)
		}
		if err := json.Unmarshal(out, &vout); err != nil {
			t.Fatalf("encoding/json refuses output %q: %v", out, err)
		}
		if !reflect.DeepEqual(vin, vout) {
			t.Fatalf("values differ:\n in %q: %#v\nout %q: %#v", in, vin, out, vout)
		}
	})
}
