package canonical

import (
	"math/rand/v2"
	"slices"
	"testing"
	"unicode/utf16"
)

// reference orders strings by UTF-16 code units the slow, obvious way.
func reference(a, b string) int {
	return slices.Compare(utf16.Encode([]rune(a)), utf16.Encode([]rune(b)))
}

func TestCompareUTF16(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "a", -1},
		{"a", "b", -1},
		{"ab", "a", 1},
		{"\r", "1", -1},
		{"\u00f6", "\u20ac", -1},
		{"\U0001F600", "\ufb33", -1}, // RFC 8785 §3.2.3: surrogates before U+FB33
		{"\ue000", "\U00010000", 1},
		{"\uffff", "\U0010FFFF", 1},
		{"\ud7ff", "\U00010000", -1},
		{"\U00010000", "\U00010001", -1},
		{"x\U0001F600", "x\uffff", -1},
	}
	for _, tt := range tests {
		if got := compareUTF16(tt.a, tt.b); got != tt.want {
			t.Errorf("compareUTF16(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := compareUTF16([]byte(tt.b), []byte(tt.a)); got != -tt.want {
			t.Errorf("compareUTF16(%q, %q) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
		if ref := reference(tt.a, tt.b); ref != tt.want {
			t.Errorf("reference(%q, %q) = %d; the table is wrong", tt.a, tt.b, ref)
		}
	}
}

// TestCompareUTF16Random checks the byte-level shortcut against the
// reference on strings drawn from the ranges where the orders differ.
func TestCompareUTF16Random(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	ranges := [][2]rune{{0, 0x7f}, {0x80, 0x7ff}, {0x800, 0xd7ff}, {0xe000, 0xffff}, {0x10000, 0x10ffff}}
	gen := func() string {
		n := r.IntN(4)
		rs := make([]rune, n)
		for i := range rs {
			rg := ranges[r.IntN(len(ranges))]
			rs[i] = rg[0] + r.Int32N(rg[1]-rg[0]+1)
		}
		return string(rs)
	}
	for range 20000 {
		a, b := gen(), gen()
		if r.IntN(4) == 0 { // shared prefixes exercise the later bytes
			b = a + b
		}
		if got, want := compareUTF16(a, b), reference(a, b); got != want {
			t.Fatalf("compareUTF16(%q, %q) = %d, want %d", a, b, got, want)
		}
	}
}
