package canonical

import (
	"errors"
	"testing"
)

func TestObjectMatchesAppend(t *testing.T) {
	t.Parallel()
	o := NewObject([]byte("x"))
	o.Bool("a", true)
	o.Int("b", -42)
	o.String("c", "é\"\n\u2028")
	o.Strings("d", nil)
	o.Strings("e", []string{"x", "y\\"})
	o.Int("f", 1<<53)
	got, err := o.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	want, err := Append([]byte("x"), map[string]any{"f": int64(1 << 53), "e": []string{"x", "y\\"}, "d": []string{},
		"c": "é\"\n\u2028", "b": -42, "a": true})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("Object wrote %s\nAppend wrote %s", got, want)
	}
}

func TestObjectRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		build func(o *Object)
		path  string
	}{
		{"keys out of order", func(o *Object) { o.String("b", ""); o.String("a", "") }, "a"},
		{"repeated key", func(o *Object) { o.Int("a", 1); o.Int("a", 2) }, "a"},
		{"invalid UTF-8 value", func(o *Object) { o.String("a", "\xff") }, "a"},
		{"invalid UTF-8 in a list", func(o *Object) { o.Strings("l", []string{"ok", "\xff"}) }, "l[1]"},
		{"inexact integer", func(o *Object) { o.Int("n", 1<<53+1) }, "n"},
		{"error sticks", func(o *Object) { o.Int("n", 1<<53+1); o.String("z", "fine") }, "n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := NewObject(nil)
			tc.build(o)
			b, err := o.Bytes()
			var ce *Error
			if !errors.As(err, &ce) || ce.Path != tc.path || b != nil {
				t.Fatalf("Bytes() = %q, %v; want an *Error at %q", b, err, tc.path)
			}
		})
	}
}
