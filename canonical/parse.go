package canonical

import "slices"

// document canonicalises the JSON text in, appending to s.out.
func (s *state) document(in []byte) error {
	s.in, s.pos = in, 0
	if err := s.value(); err != nil {
		return err
	}
	s.skipSpace()
	if s.pos != len(s.in) {
		return s.syntax("unexpected data after the top-level value")
	}
	return nil
}

func (s *state) skipSpace() {
	for s.pos < len(s.in) {
		switch s.in[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *state) value() error {
	s.skipSpace()
	if s.pos >= len(s.in) {
		return s.syntax("unexpected end of input")
	}
	switch c := s.in[s.pos]; {
	case c == '{':
		return s.object()
	case c == '[':
		return s.array()
	case c == '"':
		_, err := s.str(false)
		return err
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	default:
		return s.syntax("unexpected character %q", c)
	}
}

func (s *state) literal(word string) error {
	if len(s.in)-s.pos < len(word) || string(s.in[s.pos:s.pos+len(word)]) != word {
		return s.syntax("invalid literal, expected %s", word)
	}
	s.pos += len(word)
	s.out = append(s.out, word...)
	return nil
}

func (s *state) array() error {
	if err := s.enter(); err != nil {
		return err
	}
	s.pos++
	s.out = append(s.out, '[')
	s.skipSpace()
	if s.pos < len(s.in) && s.in[s.pos] == ']' {
		s.pos++
		s.out = append(s.out, ']')
		s.depth--
		return nil
	}
	for i := 0; ; i++ {
		s.path = append(s.path, segment{index: i, isIndex: true})
		if err := s.value(); err != nil {
			return err
		}
		s.path = s.path[:len(s.path)-1]
		s.skipSpace()
		if s.pos >= len(s.in) {
			return s.syntax("unexpected end of input in array")
		}
		c := s.in[s.pos]
		s.pos++
		if c == ']' {
			break
		}
		if c != ',' {
			s.pos--
			return s.syntax("expected ',' or ']' after array element")
		}
		s.out = append(s.out, ',')
	}
	s.out = append(s.out, ']')
	s.depth--
	return nil
}

func (s *state) object() error {
	if err := s.enter(); err != nil {
		return err
	}
	s.pos++
	s.out = append(s.out, '{')
	start, mbase, kbase := len(s.out), len(s.members), len(s.keys)
	s.skipSpace()
	if s.pos < len(s.in) && s.in[s.pos] == '}' {
		s.pos++
		s.out = append(s.out, '}')
		s.depth--
		return nil
	}
	for {
		s.skipSpace()
		if s.pos >= len(s.in) || s.in[s.pos] != '"' {
			return s.syntax("expected a string as object key")
		}
		if len(s.members) > mbase {
			s.out = append(s.out, ',')
		}
		mstart := len(s.out)
		key, err := s.str(true)
		if err != nil {
			return err
		}
		s.path = append(s.path, segment{keyB: key})
		s.skipSpace()
		if s.pos >= len(s.in) || s.in[s.pos] != ':' {
			return s.syntax("expected ':' after object key")
		}
		s.pos++
		s.out = append(s.out, ':')
		if err := s.value(); err != nil {
			return err
		}
		s.path = s.path[:len(s.path)-1]
		s.members = append(s.members, member{key: key, start: mstart, end: len(s.out)})
		s.skipSpace()
		if s.pos >= len(s.in) {
			return s.syntax("unexpected end of input in object")
		}
		c := s.in[s.pos]
		s.pos++
		if c == '}' {
			break
		}
		if c != ',' {
			s.pos--
			return s.syntax("expected ',' or '}' after object member")
		}
	}
	if err := s.sortMembers(start, s.members[mbase:]); err != nil {
		return err
	}
	s.members, s.keys = s.members[:mbase], s.keys[:kbase]
	s.out = append(s.out, '}')
	s.depth--
	return nil
}

// sortMembers puts the members written at out[start:] in RFC 8785 order and
// refuses duplicate keys (I-JSON). Input that is already sorted, such as a
// canonical payload, is left in place without copying.
func (s *state) sortMembers(start int, ms []member) error {
	sorted := true
	for i := 1; i < len(ms); i++ {
		switch c := compareUTF16(ms[i-1].key, ms[i].key); {
		case c == 0:
			return s.duplicate(ms[i].key)
		case c > 0:
			sorted = false
		}
	}
	if sorted {
		return nil
	}
	slices.SortFunc(ms, func(a, b member) int { return compareUTF16(a.key, b.key) })
	for i := 1; i < len(ms); i++ {
		if compareUTF16(ms[i-1].key, ms[i].key) == 0 {
			return s.duplicate(ms[i].key)
		}
	}
	s.scratch = append(s.scratch[:0], s.out[start:]...)
	s.out = s.out[:start]
	for i, m := range ms {
		if i > 0 {
			s.out = append(s.out, ',')
		}
		s.out = append(s.out, s.scratch[m.start-start:m.end-start]...)
	}
	return nil
}

func (s *state) duplicate(key []byte) error {
	s.path = append(s.path, segment{keyB: key})
	return s.fail("duplicate object key")
}
