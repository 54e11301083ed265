package decision

import (
	"math"
	"strconv"
)

// kind is the type of a label value, as named in a labels schema.
type kind uint8

const (
	kindString kind = iota + 1
	kindBool
	kindNumber
)

func (k kind) String() string {
	switch k {
	case kindString:
		return "string"
	case kindBool:
		return "bool"
	case kindNumber:
		return "number"
	}
	return "unknown"
}

func parseKind(s string) (kind, bool) {
	switch s {
	case "string":
		return kindString, true
	case "bool":
		return kindBool, true
	case "number":
		return kindNumber, true
	}
	return 0, false
}

// scalar is a typed label value. Equality is typed: the string "true" is not
// the bool true, and numbers compare as float64, so 1 == 1.0.
type scalar struct {
	k kind
	s string  // kindString
	f float64 // kindNumber; kindBool stores 1 for true, 0 for false
}

func stringScalar(s string) scalar  { return scalar{k: kindString, s: s} }
func numberScalar(f float64) scalar { return scalar{k: kindNumber, f: f} }
func boolScalar(b bool) scalar {
	if b {
		return scalar{k: kindBool, f: 1}
	}
	return scalar{k: kindBool}
}

func (a scalar) equal(b scalar) bool {
	return a.k == b.k && a.s == b.s && a.f == b.f
}

// value returns the scalar as string, bool or float64, the types a JSON
// decoder produces.
func (a scalar) value() any {
	switch a.k {
	case kindString:
		return a.s
	case kindBool:
		return a.f == 1
	case kindNumber:
		return a.f
	}
	return nil
}

// String renders the scalar for messages: strings quoted, others plain.
func (a scalar) String() string {
	switch a.k {
	case kindString:
		return strconv.Quote(a.s)
	case kindBool:
		return strconv.FormatBool(a.f == 1)
	case kindNumber:
		return strconv.FormatFloat(a.f, 'g', -1, 64)
	}
	return "?"
}

// maxExactInt is 2^53: integers beyond it may not survive a float64.
const maxExactInt = 1 << 53

// scalarOf converts a job label value. It returns a non-empty problem when
// v is not a string, bool or finite number, or is an integer that a float64
// cannot hold exactly (it would compare equal to its neighbour). It does not
// allocate.
func scalarOf(v any) (scalar, string) {
	switch x := v.(type) {
	case string:
		return stringScalar(x), ""
	case bool:
		return boolScalar(x), ""
	case float64:
		return floatScalar(x)
	case int:
		return intScalar(int64(x))
	case int64:
		return intScalar(x)
	case int32:
		return numberScalar(float64(x)), ""
	case int16:
		return numberScalar(float64(x)), ""
	case int8:
		return numberScalar(float64(x)), ""
	case uint:
		return uintScalar(uint64(x))
	case uint64:
		return uintScalar(x)
	case uint32:
		return numberScalar(float64(x)), ""
	case uint16:
		return numberScalar(float64(x)), ""
	case uint8:
		return numberScalar(float64(x)), ""
	case float32:
		return floatScalar(float64(x))
	case nil:
		return scalar{}, "value is null; want a string, bool or number"
	}
	return scalar{}, "value must be a string, bool or number"
}

func floatScalar(f float64) (scalar, string) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return scalar{}, "number must be finite"
	}
	return numberScalar(f), ""
}

func intScalar(i int64) (scalar, string) {
	if i > maxExactInt || i < -maxExactInt {
		return scalar{}, "integer is too large to compare exactly (beyond ±2^53)"
	}
	return numberScalar(float64(i)), ""
}

func uintScalar(u uint64) (scalar, string) {
	if u > maxExactInt {
		return scalar{}, "integer is too large to compare exactly (beyond ±2^53)"
	}
	return numberScalar(float64(u)), ""
}
