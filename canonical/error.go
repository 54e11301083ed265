package canonical

import (
	"strconv"
	"strings"
)

// Error reports input that has no canonical form. Path names the offending
// value, such as "payload.items[2].amount" or "labels.env"; it is empty when
// the whole input is at fault.
type Error struct {
	Path string
	Msg  string
}

func (e *Error) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// segment is one step of the path to the value being processed: an object
// key (from the input bytes or from a Go string) or an array index.
type segment struct {
	keyB    []byte
	keyS    string
	index   int
	isIndex bool
	isStr   bool
}

// pathString renders root plus segments. It runs only when an error is
// reported, so it may allocate freely.
func pathString(root string, segs []segment) string {
	var b strings.Builder
	b.WriteString(root)
	for _, sg := range segs {
		if sg.isIndex {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(sg.index))
			b.WriteByte(']')
			continue
		}
		key := sg.keyS
		if !sg.isStr {
			key = string(sg.keyB)
		}
		if !plainKey(key) {
			b.WriteByte('[')
			b.WriteString(strconv.Quote(key))
			b.WriteByte(']')
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(key)
	}
	return b.String()
}

// plainKey reports whether key can be written after a dot without making the
// path ambiguous.
func plainKey(key string) bool {
	if key == "" {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// shorten keeps error messages readable when a number literal is huge.
func shorten(lit string) string {
	const limit = 40
	if len(lit) <= limit {
		return lit
	}
	return lit[:limit] + "…"
}
