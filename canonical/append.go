package canonical

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Transform returns the RFC 8785 canonical form of one JSON text.
//
// It refuses, with an *Error, invalid JSON, trailing data, duplicate object
// keys, invalid UTF-8, lone surrogates, nesting deeper than 64 levels, and
// numbers whose canonical form would denote a different value than the text
// sent (such as 9007199254740993) or that overflow a double.
func Transform(data []byte) ([]byte, error) {
	return transform(make([]byte, 0, len(data)), data, true)
}

// transform is Transform with the exact-number rule optional, so tests can
// replay RFC 8785's own examples, which round numbers silently.
func transform(dst, data []byte, exact bool) ([]byte, error) {
	s := getState(exact, "")
	defer putState(s)
	s.out = dst
	if err := s.document(data); err != nil {
		return nil, err
	}
	return s.out, nil
}

// Append appends the canonical form of a Go value to dst. It accepts nil,
// bool, string, float64, float32, the signed and unsigned integer types,
// json.Number, json.RawMessage (canonicalised like Transform),
// map[string]any, map[string]string, []any and []string, nested freely.
// Numbers follow the same exactness rule as Transform, so an integer beyond
// 2^53 is refused unless its canonical form denotes the same value. A nil
// map or slice is written as {} or []. []byte is refused: it could mean a
// string, base64 or raw JSON.
func Append(dst []byte, v any) ([]byte, error) {
	s := getState(true, "")
	defer putState(s)
	s.out = dst
	if err := s.appendValue(v); err != nil {
		return dst, err
	}
	return s.out, nil
}

func (s *state) appendValue(v any) error {
	switch v := v.(type) {
	case nil:
		s.out = append(s.out, "null"...)
	case bool:
		s.out = strconv.AppendBool(s.out, v)
	case string:
		return s.appendGoString(v)
	case float64:
		return s.appendGoFloat(v)
	case float32:
		return s.appendGoFloat(float64(v))
	case int:
		return s.appendInt(int64(v))
	case int8:
		return s.appendInt(int64(v))
	case int16:
		return s.appendInt(int64(v))
	case int32:
		return s.appendInt(int64(v))
	case int64:
		return s.appendInt(v)
	case uint:
		return s.appendUint(uint64(v))
	case uint8:
		return s.appendUint(uint64(v))
	case uint16:
		return s.appendUint(uint64(v))
	case uint32:
		return s.appendUint(uint64(v))
	case uint64:
		return s.appendUint(v)
	case json.Number:
		return s.appendJSONNumber(string(v))
	case json.RawMessage:
		return s.appendRaw(v)
	case map[string]any:
		return appendMap(s, v, (*state).appendValue)
	case map[string]string:
		return appendMap(s, v, (*state).appendGoString)
	case []any:
		return appendSlice(s, v, (*state).appendValue)
	case []string:
		return appendSlice(s, v, (*state).appendGoString)
	case []byte:
		return s.fail("[]byte is ambiguous; pass a string or a json.RawMessage")
	default:
		return s.fail(fmt.Sprintf("unsupported type %T", v))
	}
	return nil
}

func (s *state) appendGoString(v string) error {
	if !utf8.ValidString(v) {
		return s.fail("invalid UTF-8 in string")
	}
	s.out = appendString(s.out, v)
	return nil
}

func (s *state) appendGoFloat(f float64) error {
	out, ok := appendFloat(s.out, f)
	if !ok {
		return s.fail(fmt.Sprintf("number %v has no JSON form", f))
	}
	s.out = out
	return nil
}

// appendInt and appendUint go through the decimal text so that integers obey
// exactly the rule Transform applies to the same digits.
func (s *state) appendInt(v int64) error {
	var buf [24]byte
	return s.appendLiteral(strconv.AppendInt(buf[:0], v, 10))
}

func (s *state) appendUint(v uint64) error {
	var buf [24]byte
	return s.appendLiteral(strconv.AppendUint(buf[:0], v, 10))
}

func (s *state) appendLiteral(lit []byte) error {
	out, msg := appendNumber(s.out, lit, s.exact)
	if msg != "" {
		return s.fail(msg)
	}
	s.out = out
	return nil
}

func (s *state) appendJSONNumber(v string) error {
	if end, ok := scanNumber(v, 0); !ok || end != len(v) {
		return s.fail("invalid number " + strconv.Quote(shorten(v)))
	}
	out, msg := appendNumber(s.out, v, s.exact)
	if msg != "" {
		return s.fail(msg)
	}
	s.out = out
	return nil
}

// appendRaw canonicalises embedded JSON at the current path and depth.
func (s *state) appendRaw(raw json.RawMessage) error {
	in, pos := s.in, s.pos
	err := s.document(raw)
	s.in, s.pos = in, pos
	return err
}

func appendMap[V any](s *state, m map[string]V, elem func(*state, V) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	base := len(s.strs)
	for k := range m {
		s.strs = append(s.strs, k)
	}
	keys := s.strs[base:]
	slices.SortFunc(keys, compareUTF16[string])
	s.out = append(s.out, '{')
	s.path = append(s.path, segment{})
	for i, k := range keys {
		s.path[len(s.path)-1] = segment{keyS: k, isStr: true}
		if !utf8.ValidString(k) {
			return s.fail("invalid UTF-8 in object key")
		}
		if i > 0 {
			s.out = append(s.out, ',')
		}
		s.out = appendString(s.out, k)
		s.out = append(s.out, ':')
		if err := elem(s, m[k]); err != nil {
			return err
		}
	}
	s.path = s.path[:len(s.path)-1]
	clear(keys)
	s.strs = s.strs[:base]
	s.out = append(s.out, '}')
	s.depth--
	return nil
}

func appendSlice[V any](s *state, v []V, elem func(*state, V) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	s.out = append(s.out, '[')
	s.path = append(s.path, segment{isIndex: true})
	for i, e := range v {
		s.path[len(s.path)-1].index = i
		if i > 0 {
			s.out = append(s.out, ',')
		}
		if err := elem(s, e); err != nil {
			return err
		}
	}
	s.path = s.path[:len(s.path)-1]
	s.out = append(s.out, ']')
	s.depth--
	return nil
}
