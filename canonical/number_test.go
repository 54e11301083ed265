package canonical

import (
	"encoding/json"
	"math"
	"math/big"
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestNumbersMatchEncodingJSON uses encoding/json, which also formats
// float64 the ECMAScript way, as an independent oracle on random doubles.
func TestNumbersMatchEncodingJSON(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	check := func(f float64) {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return
		}
		want, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		if f == 0 {
			want = []byte("0") // encoding/json keeps the sign of -0; RFC 8785 drops it
		}
		got, err := Append(nil, f)
		if err != nil || string(got) != string(want) {
			t.Fatalf("Append(%v) = %s, %v; encoding/json writes %s", f, got, err, want)
		}
		back, err := strconv.ParseFloat(string(got), 64)
		if err != nil || back != f && !(f == 0 && back == 0) {
			t.Fatalf("%s parses back as %v, want %v", got, back, f)
		}
		// The canonical text is exact by construction, so Transform keeps it.
		if again, err := Transform(got); err != nil || string(again) != string(got) {
			t.Fatalf("Transform(%s) = %s, %v", got, again, err)
		}
	}
	for range 50000 {
		check(math.Float64frombits(r.Uint64()))                                   // any bit pattern
		check(float64(r.Int64N(1<<54)-1<<53) / math.Pow(10, float64(r.IntN(30)))) // decimal-looking values
	}
	for e := -330; e <= 310; e++ {
		check(math.Pow(10, float64(e)))
		check(-1.5 * math.Pow(10, float64(e)))
	}
}

func TestSameDecimal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		lit    string
		digits string
		n      int
		want   bool
	}{
		{"0", "", 0, true},
		{"-0.000e7", "", 0, true},
		{"1e-400", "", 0, false},
		{"1", "1", 1, true},
		{"1.000", "1", 1, true},
		{"0.01e2", "1", 1, true},
		{"100", "1", 3, true},
		{"10.5", "105", 2, true},
		{"105e-1", "105", 2, true},
		{"0.0105E3", "105", 2, true},
		{"10.5", "105", 3, false},
		{"10.6", "105", 2, false},
		{"10.05", "105", 2, false},
		{"1005", "105", 4, false},
		{"1.05", "15", 1, false},
		{"12345678901234567", "12345678901234567", 17, true},
		{"123456789012345678", "12345678901234567", 18, false},
		{"1e99999999999", "1", 100000000000, false},
	}
	for _, tt := range tests {
		if got := sameDecimal(tt.lit, []byte(tt.digits), tt.n); got != tt.want {
			t.Errorf("sameDecimal(%q, %q, %d) = %v, want %v", tt.lit, tt.digits, tt.n, got, tt.want)
		}
	}
}

// TestExactRuleAgainstBigRat checks the exact-number rule against math/big on
// random literals: a number is accepted exactly when its canonical form has
// the same rational value.
func TestExactRuleAgainstBigRat(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(5, 6))
	digits := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('0' + r.IntN(10))
		}
		return string(b)
	}
	accepted := 0
	for range 20000 {
		lit := digits(1 + r.IntN(20))
		for len(lit) > 1 && lit[0] == '0' {
			lit = lit[1:]
		}
		if r.IntN(2) == 0 {
			lit += "." + digits(1+r.IntN(20))
		}
		if r.IntN(2) == 0 {
			lit += "e" + strconv.Itoa(r.IntN(80)-40)
		}
		if r.IntN(2) == 0 {
			lit = "-" + lit
		}
		f, err := strconv.ParseFloat(lit, 64)
		if err != nil {
			t.Fatal(err)
		}
		canon, _ := appendFloat(nil, f)
		want := ratOf(t, lit).Cmp(ratOf(t, string(canon))) == 0
		got, err := Transform([]byte(lit))
		if (err == nil) != want {
			t.Fatalf("Transform(%s) = %s, %v; canonical form %s, same value %v", lit, got, err, canon, want)
		}
		if err == nil {
			accepted++
			if string(got) != string(canon) {
				t.Fatalf("Transform(%s) = %s, want %s", lit, got, canon)
			}
		}
	}
	if accepted < 1000 {
		t.Errorf("only %d random literals accepted; the generator is too narrow", accepted)
	}
}

func ratOf(t *testing.T, s string) *big.Rat {
	t.Helper()
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		t.Fatalf("big.Rat cannot parse %q", s)
	}
	return r
}
