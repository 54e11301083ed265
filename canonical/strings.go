package canonical

import (
	"unicode/utf16"
	"unicode/utf8"
)

// str parses the string at s.pos and writes its canonical form. It returns
// the decoded string: a slice of the input when the string has no escapes,
// otherwise a slice of s.keys (for keys, which must outlive the call) or of
// s.scratch (for values, which must not).
func (s *state) str(isKey bool) ([]byte, error) {
	s.pos++ // opening quote
	start := s.pos
	for i := start; i < len(s.in); {
		c := s.in[i]
		if plainASCII[c] {
			i++
			continue
		}
		switch {
		case c == '"':
			raw := s.in[start:i]
			// Without escapes or control characters the input is already in
			// canonical form.
			s.out = append(s.out, '"')
			s.out = append(s.out, raw...)
			s.out = append(s.out, '"')
			s.pos = i + 1
			return raw, nil
		case c == '\\':
			return s.escapedStr(start, isKey)
		case c < 0x20:
			s.pos = i
			return nil, s.syntax("control character %#02x in string", c)
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(s.in[i:])
			if r == utf8.RuneError && size == 1 {
				s.pos = i
				return nil, s.syntax("invalid UTF-8 in string")
			}
			i += size
		}
	}
	s.pos = len(s.in)
	return nil, s.syntax("unterminated string")
}

// escapedStr decodes the string starting at start (after the quote) and then
// writes it escaped the RFC 8785 way.
func (s *state) escapedStr(start int, isKey bool) ([]byte, error) {
	var dst []byte
	if isKey {
		dst = s.keys
	} else {
		dst = s.scratch[:0]
	}
	base := len(dst)
	s.pos = start
	for {
		if s.pos >= len(s.in) {
			return nil, s.syntax("unterminated string")
		}
		c := s.in[s.pos]
		switch {
		case c == '"':
			s.pos++
			dec := dst[base:]
			if isKey {
				s.keys = dst
			} else {
				s.scratch = dst
			}
			s.out = appendString(s.out, dec)
			return dec, nil
		case c == '\\':
			var err error
			if dst, err = s.escape(dst); err != nil {
				return nil, err
			}
		case c < 0x20:
			return nil, s.syntax("control character %#02x in string", c)
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			s.pos++
		default:
			r, size := utf8.DecodeRune(s.in[s.pos:])
			if r == utf8.RuneError && size == 1 {
				return nil, s.syntax("invalid UTF-8 in string")
			}
			dst = append(dst, s.in[s.pos:s.pos+size]...)
			s.pos += size
		}
	}
}

// escape decodes one escape sequence at s.pos, appending its UTF-8 to dst.
func (s *state) escape(dst []byte) ([]byte, error) {
	if s.pos+1 >= len(s.in) {
		return nil, s.syntax("unterminated escape")
	}
	c := s.in[s.pos+1]
	var b byte
	switch c {
	case '"', '\\', '/':
		b = c
	case 'b':
		b = '\b'
	case 'f':
		b = '\f'
	case 'n':
		b = '\n'
	case 'r':
		b = '\r'
	case 't':
		b = '\t'
	case 'u':
		return s.unicodeEscape(dst)
	default:
		return nil, s.syntax("invalid escape \\%c", c)
	}
	s.pos += 2
	return append(dst, b), nil
}

// unicodeEscape decodes \uXXXX, joining surrogate pairs and refusing lone
// surrogates, which have no UTF-8 form.
func (s *state) unicodeEscape(dst []byte) ([]byte, error) {
	r, ok := hex4(s.in, s.pos+2)
	if !ok {
		return nil, s.syntax("invalid \\u escape")
	}
	switch {
	case utf16.IsSurrogate(r) && r < 0xDC00:
		lo, ok := hex4(s.in, s.pos+8)
		if !ok || s.in[s.pos+6] != '\\' || s.in[s.pos+7] != 'u' || lo < 0xDC00 || lo > 0xDFFF {
			return nil, s.syntax("lone surrogate \\u%04x", r)
		}
		r = utf16.DecodeRune(r, lo)
		s.pos += 12
	case utf16.IsSurrogate(r):
		return nil, s.syntax("lone surrogate \\u%04x", r)
	default:
		s.pos += 6
	}
	return utf8.AppendRune(dst, r), nil
}

// hex4 reads four hex digits at in[i:].
func hex4(in []byte, i int) (rune, bool) {
	if i < 0 || i+4 > len(in) {
		return 0, false
	}
	var r rune
	for _, c := range in[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

const hexDigits = "0123456789abcdef"

// plainASCII marks the bytes a string can hold literally in both JSON input
// and canonical output.
var plainASCII = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendString writes valid UTF-8 text as a JSON string escaped per RFC 8785
// §3.2.2.2: only '"', '\\' and control characters are escaped, with the
// short forms where JSON has them and lowercase \u00xx otherwise.
func appendString[T string | []byte](dst []byte, v T) []byte {
	dst = append(dst, '"')
	last := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, v[last:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		last = i + 1
	}
	dst = append(dst, v[last:]...)
	return append(dst, '"')
}

// compareUTF16 orders two valid UTF-8 strings by their UTF-16 code units, as
// RFC 8785 §3.2.3 requires. UTF-8 byte order equals code point order, which
// differs from UTF-16 order only between U+E000..U+FFFF (lead bytes 0xEE,
// 0xEF) and supplementary characters (lead bytes 0xF0..0xF4, encoded in
// UTF-16 as surrogates 0xD800..0xDFFF). After an equal prefix both strings are
// at a rune boundary, so comparing the first differing bytes is enough.
func compareUTF16[T string | []byte](a, b T) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if ca >= 0xEE && cb >= 0xEE {
			if sa, sb := ca >= 0xF0, cb >= 0xF0; sa != sb {
				if sa {
					return -1
				}
				return 1
			}
		}
		if ca < cb {
			return -1
		}
		return 1
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}
