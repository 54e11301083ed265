package canonical

import (
	"math"
	"math/big"
	"strconv"
)

// number parses the number literal at s.pos and writes its canonical form.
func (s *state) number() error {
	start := s.pos
	end, ok := scanNumber(s.in, start)
	if !ok {
		s.pos = end
		return s.syntax("invalid number")
	}
	s.pos = end
	out, msg := appendNumber(s.out, s.in[start:end], s.exact)
	if msg != "" {
		return s.fail(msg)
	}
	s.out = out
	return nil
}

// scanNumber matches the JSON number grammar at in[i:] and returns where the
// literal ends.
func scanNumber[T string | []byte](in T, i int) (int, bool) {
	if i < len(in) && in[i] == '-' {
		i++
	}
	switch {
	case i >= len(in):
		return i, false
	case in[i] == '0':
		i++
	case in[i] >= '1' && in[i] <= '9':
		i = skipDigits(in, i)
	default:
		return i, false
	}
	if i < len(in) && in[i] == '.' {
		j := skipDigits(in, i+1)
		if j == i+1 {
			return j, false
		}
		i = j
	}
	if i < len(in) && (in[i] == 'e' || in[i] == 'E') {
		i++
		if i < len(in) && (in[i] == '+' || in[i] == '-') {
			i++
		}
		j := skipDigits(in, i)
		if j == i {
			return j, false
		}
		i = j
	}
	return i, true
}

func skipDigits[T string | []byte](in T, i int) int {
	for i < len(in) && in[i] >= '0' && in[i] <= '9' {
		i++
	}
	return i
}

// appendNumber writes the canonical form of a grammatical number literal.
// With exact set, it refuses a literal whose decimal value differs from the
// value its canonical form denotes. It returns a non-empty message on
// refusal.
func appendNumber[T string | []byte](dst []byte, lit T, exact bool) ([]byte, string) {
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil {
		// The literal is grammatical, so the only failure is overflow.
		return dst, "number " + shorten(string(lit)) + " overflows an IEEE 754 double"
	}
	var buf [32]byte
	digits, exp := shortest(buf[:0], f)
	if exact && !sameDecimal(lit, digits, exp) {
		return dst, inexactMessage(string(lit), f)
	}
	return appendES(dst, f < 0, digits, exp), ""
}

// appendFloat writes the canonical form of a finite double.
func appendFloat(dst []byte, f float64) ([]byte, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return dst, false
	}
	var buf [32]byte
	digits, exp := shortest(buf[:0], f)
	return appendES(dst, f < 0, digits, exp), true
}

// shortest returns the shortest decimal digits that round-trip to |f|, and
// the exponent n such that |f| = 0.digits × 10^n. Zero has no digits.
func shortest(buf []byte, f float64) ([]byte, int) {
	if f == 0 {
		return nil, 0
	}
	// strconv's shortest round-trip formatting gives the same digits as
	// ECMAScript's Number::toString (both pick the shortest, closest string).
	b := strconv.AppendFloat(buf, math.Abs(f), 'e', -1, 64)
	e := 0
	for e < len(b) && b[e] != 'e' {
		e++
	}
	exp, _ := strconv.Atoi(string(b[e+1:]))
	digits := b[:0]
	for _, c := range b[:e] {
		if c != '.' {
			digits = append(digits, c)
		}
	}
	return digits, exp + 1
}

// appendES formats 0.digits × 10^n as ECMAScript Number::toString does
// (RFC 8785 §3.2.2.3).
func appendES(dst []byte, neg bool, digits []byte, n int) []byte {
	if len(digits) == 0 {
		return append(dst, '0') // covers -0
	}
	if neg {
		dst = append(dst, '-')
	}
	k := len(digits)
	switch {
	case k <= n && n <= 21:
		dst = append(dst, digits...)
		for range n - k {
			dst = append(dst, '0')
		}
	case 0 < n && n <= 21:
		dst = append(dst, digits[:n]...)
		dst = append(dst, '.')
		dst = append(dst, digits[n:]...)
	case -6 < n && n <= 0:
		dst = append(dst, '0', '.')
		for range -n {
			dst = append(dst, '0')
		}
		dst = append(dst, digits...)
	default:
		dst = append(dst, digits[0])
		if k > 1 {
			dst = append(dst, '.')
			dst = append(dst, digits[1:]...)
		}
		dst = append(dst, 'e')
		if n-1 >= 0 {
			dst = append(dst, '+')
		}
		dst = strconv.AppendInt(dst, int64(n-1), 10)
	}
	return dst
}

// sameDecimal reports whether a grammatical literal denotes exactly
// 0.digits × 10^n (zero when digits is empty). Comparing normalised digits
// and exponents is exact decimal arithmetic, with no allocation.
func sameDecimal[T string | []byte](lit T, digits []byte, n int) bool {
	i := 0
	if i < len(lit) && lit[i] == '-' {
		i++
	}
	// Walk the mantissa, skipping leading zeros and matching significant
	// digits against digits; trailing zeros beyond them must all be zero.
	pos := 0          // mantissa digits seen
	intLen := -1      // mantissa digits before the point
	first := -1       // position of the first non-zero digit
	matched := 0      // significant digits matched so far
	pendingZeros := 0 // zeros after the last matched digit
	for ; i < len(lit) && lit[i] != 'e' && lit[i] != 'E'; i++ {
		c := lit[i]
		if c == '.' {
			intLen = pos
			continue
		}
		if first < 0 {
			if c == '0' {
				pos++
				continue
			}
			first = pos
		}
		pos++
		if c == '0' {
			pendingZeros++
			continue
		}
		// A non-zero digit: the zeros before it are significant too.
		if matched+pendingZeros+1 > len(digits) {
			return false
		}
		for range pendingZeros {
			if digits[matched] != '0' {
				return false
			}
			matched++
		}
		pendingZeros = 0
		if digits[matched] != c {
			return false
		}
		matched++
	}
	if intLen < 0 {
		intLen = pos
	}
	if first < 0 {
		return len(digits) == 0 // the literal is zero
	}
	if matched != len(digits) {
		return false
	}
	exp, ok := literalExponent(lit, i)
	if !ok {
		return false
	}
	return intLen-first+exp == n
}

// literalExponent reads the exponent that starts at lit[i] ('e' or 'E'), if
// any. Exponents too large to matter for a double report !ok.
func literalExponent[T string | []byte](lit T, i int) (int, bool) {
	if i >= len(lit) {
		return 0, true
	}
	i++
	neg := false
	if lit[i] == '+' || lit[i] == '-' {
		neg = lit[i] == '-'
		i++
	}
	exp := 0
	for ; i < len(lit); i++ {
		exp = exp*10 + int(lit[i]-'0')
		if exp > 1<<30 {
			return 0, false
		}
	}
	if neg {
		exp = -exp
	}
	return exp, true
}

// inexactMessage explains a refused number. It runs only on refusal, so it
// may use math/big to tell a value no double holds from a double written in
// a longer form than its canonical one.
func inexactMessage(lit string, f float64) string {
	msg := "number " + shorten(lit) + " cannot be represented exactly as an IEEE 754 double"
	// A double's exact decimal expansion has at most 767 significant digits
	// and a small exponent; anything beyond that is not worth big arithmetic.
	if len(lit) > 1100 || f == 0 {
		return msg
	}
	if e, ok := literalExponent(lit, exponentStart(lit)); !ok || e > 400 || e < -1200 {
		return msg
	}
	r, ok := new(big.Rat).SetString(lit)
	if !ok || r.Cmp(new(big.Rat).SetFloat64(f)) != 0 {
		return msg
	}
	var buf [32]byte
	digits, n := shortest(buf[:0], f)
	canon := appendES(nil, f < 0, digits, n)
	return "number " + shorten(lit) + " would change value in canonical form (" + string(canon) +
		"); send it as a string"
}

func exponentStart(lit string) int {
	for i := 0; i < len(lit); i++ {
		if lit[i] == 'e' || lit[i] == 'E' {
			return i
		}
	}
	return len(lit)
}
