package decision

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ValidateTopic reports whether topic is a concrete job topic: non-empty
// tokens separated by dots, no wildcards (* or >), no spaces or control
// characters, valid UTF-8. Errors wrap ErrInvalidTopic.
func ValidateTopic(topic string) error {
	if msg := topicProblem(topic); msg != "" {
		return fmt.Errorf("%w %q: %s", ErrInvalidTopic, topic, msg)
	}
	return nil
}

// Byte classes for topicProblem's fast path.
const (
	byteOK = iota
	byteDot
	byteBad
	byteMulti // the first byte of a multi-byte UTF-8 sequence (or invalid)
)

var topicBytes = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c == '.':
			t[c] = byteDot
		case c >= utf8.RuneSelf:
			t[c] = byteMulti
		case asciiProblem(byte(c)) != "":
			t[c] = byteBad
		}
	}
	return t
}()

// topicProblem returns what is wrong with a concrete topic, or "". It does
// not allocate, and its ASCII path is a table lookup, since Evaluate calls it
// on every job.
func topicProblem(topic string) string {
	if topic == "" {
		return "topic is empty"
	}
	start := 0
	for i := 0; i < len(topic); {
		switch topicBytes[topic[i]] {
		case byteOK:
			i++
		case byteDot:
			if i == start {
				return "empty token (leading, trailing or double dot)"
			}
			i++
			start = i
		case byteBad:
			return asciiProblem(topic[i])
		default:
			r, size := utf8.DecodeRuneInString(topic[i:])
			if msg := runeProblem(r, size); msg != "" {
				return msg
			}
			i += size
		}
	}
	if start == len(topic) {
		return "empty token (leading, trailing or double dot)"
	}
	return ""
}

func asciiProblem(c byte) string {
	switch {
	case c == '*' || c == '>':
		return "wildcards are only allowed in policy patterns"
	case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f':
		return "contains whitespace"
	case c < 0x20 || c == 0x7f:
		return "contains a control character"
	}
	return ""
}

func runeProblem(r rune, size int) string {
	switch {
	case r == utf8.RuneError && size <= 1:
		return "not valid UTF-8"
	case unicode.IsSpace(r):
		return "contains whitespace"
	case unicode.IsControl(r):
		return "contains a control character"
	}
	return ""
}

// topicPattern is a parsed `when.topic` value.
type topicPattern struct {
	raw    string
	tokens []string // "*" and ">" are wildcards here
}

// wildcard reports whether the pattern needs the trie (it has * or >).
func (p topicPattern) wildcard() bool {
	for _, t := range p.tokens {
		if t == "*" || t == ">" {
			return true
		}
	}
	return false
}

// parsePattern parses a NATS-style topic pattern: `*` matches exactly one
// token, `>` one or more trailing tokens and only as the last token.
func parsePattern(s string) (topicPattern, string) {
	if s == "" {
		return topicPattern{}, "topic pattern is empty"
	}
	tokens := strings.Split(s, ".")
	for i, t := range tokens {
		switch {
		case t == "":
			return topicPattern{}, fmt.Sprintf("topic pattern %q has an empty token (leading, trailing or double dot)", s)
		case t == "*":
		case t == ">":
			if i != len(tokens)-1 {
				return topicPattern{}, fmt.Sprintf("topic pattern %q: > is only allowed as the last token", s)
			}
		case strings.ContainsAny(t, "*>"):
			return topicPattern{}, fmt.Sprintf("topic pattern %q: token %q mixes a wildcard with text; a wildcard must be a whole token", s, t)
		default:
			if msg := topicProblem(t); msg != "" {
				return topicPattern{}, fmt.Sprintf("topic pattern %q: %s", s, msg)
			}
		}
	}
	return topicPattern{raw: s, tokens: tokens}, ""
}

// TopicPattern is a topic pattern as policies write `when.topic`, for code outside the
// engine that selects jobs by topic the same way (notification destinations).
type TopicPattern struct{ p topicPattern }

// ParseTopicPattern parses a NATS-style pattern: `*` matches exactly one token, `>` one
// or more trailing tokens. Errors wrap ErrInvalidTopic.
func ParseTopicPattern(s string) (TopicPattern, error) {
	p, msg := parsePattern(s)
	if msg != "" {
		return TopicPattern{}, fmt.Errorf("%w: %s", ErrInvalidTopic, msg)
	}
	return TopicPattern{p}, nil
}

// String returns the pattern as written.
func (t TopicPattern) String() string { return t.p.raw }

// Match reports whether the concrete topic matches the pattern, as Evaluate matches
// rules. The zero TopicPattern matches nothing.
func (t TopicPattern) Match(topic string) bool {
	toks := t.p.tokens
	if len(toks) == 0 {
		return false
	}
	for i, pt := range toks {
		head, rest, more := strings.Cut(topic, ".")
		switch {
		case pt == ">":
			return topic != "" // one or more tokens remain
		case topic == "":
			return false
		case pt != "*" && pt != head:
			return false
		}
		if !more {
			return i == len(toks)-1
		}
		topic = rest
	}
	return false // topic has tokens beyond the pattern
}
