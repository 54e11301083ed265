package canonical

import (
	"strconv"
	"unicode/utf8"
)

// Object writes one flat JSON object in canonical form straight from its members,
// without building a map to sort: the caller gives the members in canonical key order.
// A key out of order, invalid UTF-8 or an integer beyond the exact range fails Bytes,
// so a mistake cannot produce a form that Append would not.
//
// It exists for the records hashed on every write (evidence events), where building a
// map[string]any of two dozen members cost more than the hash.
type Object struct {
	out  []byte
	last string
	n    int
	err  *Error
}

// NewObject starts an object appended to dst.
func NewObject(dst []byte) *Object {
	return &Object{out: append(dst, '{')}
}

// key writes the next member's key; false when the object has already failed.
func (o *Object) key(k string) bool {
	switch {
	case o.err != nil:
		return false
	case o.n > 0 && compareUTF16(o.last, k) >= 0:
		o.err = &Error{Path: k, Msg: "object key out of canonical order after " + strconv.Quote(o.last)}
		return false
	case !utf8.ValidString(k):
		o.err = &Error{Msg: "invalid UTF-8 in object key"}
		return false
	}
	if o.n > 0 {
		o.out = append(o.out, ',')
	}
	o.n++
	o.last = k
	o.out = appendString(o.out, k)
	o.out = append(o.out, ':')
	return true
}

// String adds a string member.
func (o *Object) String(k, v string) {
	if !o.key(k) {
		return
	}
	if !utf8.ValidString(v) {
		o.err = &Error{Path: k, Msg: "invalid UTF-8 in string"}
		return
	}
	o.out = appendString(o.out, v)
}

// Int adds an integer member, under Append's exactness rule.
func (o *Object) Int(k string, v int64) {
	if !o.key(k) {
		return
	}
	var buf [24]byte
	out, msg := appendNumber(o.out, strconv.AppendInt(buf[:0], v, 10), true)
	if msg != "" {
		o.err = &Error{Path: k, Msg: msg}
		return
	}
	o.out = out
}

// Bool adds a boolean member.
func (o *Object) Bool(k string, v bool) {
	if o.key(k) {
		o.out = strconv.AppendBool(o.out, v)
	}
}

// Strings adds an array of strings ([] when empty).
func (o *Object) Strings(k string, v []string) {
	if !o.key(k) {
		return
	}
	o.out = append(o.out, '[')
	for i, s := range v {
		if !utf8.ValidString(s) {
			o.err = &Error{Path: k + "[" + strconv.Itoa(i) + "]", Msg: "invalid UTF-8 in string"}
			return
		}
		if i > 0 {
			o.out = append(o.out, ',')
		}
		o.out = appendString(o.out, s)
	}
	o.out = append(o.out, ']')
}

// Bytes closes the object and returns dst with it appended, or the first error.
func (o *Object) Bytes() ([]byte, error) {
	if o.err != nil {
		return nil, o.err
	}
	return append(o.out, '}'), nil
}
