package canonical

import (
	"fmt"
	"sync"
)

// maxDepth bounds nesting of arrays and objects, so hostile input cannot
// exhaust the stack.
const maxDepth = 64

// state carries one canonicalisation. Its buffers are reused through a pool
// so the hot path does not allocate per call.
type state struct {
	in    []byte // JSON text being parsed
	pos   int
	out   []byte // canonical output
	depth int

	// exact refuses numbers whose canonical form would change their value.
	// Only tests that replay the RFC's own examples turn it off.
	exact bool

	members []member // members of the objects being parsed, innermost last
	keys    []byte   // decoded object keys that contained escapes
	scratch []byte   // decoded strings and the reordering of object members
	strs    []string // sorted map keys in Append
	root    string   // path prefix of the value, e.g. "payload"
	path    []segment
	buf     []byte // output buffer kept for JobHash
}

// member is one object member: its decoded key and the span of
// `"key":value` in out.
type member struct {
	key        []byte
	start, end int
}

var statePool = sync.Pool{New: func() any { return new(state) }}

// maxPooled keeps one huge input from pinning its buffers in the pool.
const maxPooled = 64 << 10

func getState(exact bool, root string) *state {
	s := statePool.Get().(*state)
	s.exact = exact
	s.root = root
	return s
}

func putState(s *state) {
	if cap(s.scratch) > maxPooled || cap(s.keys) > maxPooled || cap(s.buf) > maxPooled {
		return
	}
	clear(s.members[:cap(s.members)])
	clear(s.strs[:cap(s.strs)])
	clear(s.path[:cap(s.path)])
	*s = state{
		members: s.members[:0],
		keys:    s.keys[:0],
		scratch: s.scratch[:0],
		strs:    s.strs[:0],
		path:    s.path[:0],
		buf:     s.buf[:0],
	}
	statePool.Put(s)
}

// fail reports msg at the current path.
func (s *state) fail(msg string) *Error {
	return &Error{Path: pathString(s.root, s.path), Msg: msg}
}

// syntax reports malformed JSON at the current offset.
func (s *state) syntax(format string, args ...any) *Error {
	return s.fail(fmt.Sprintf("invalid JSON at offset %d: ", s.pos) + fmt.Sprintf(format, args...))
}

func (s *state) enter() error {
	s.depth++
	if s.depth > maxDepth {
		return s.fail(fmt.Sprintf("nesting deeper than %d levels", maxDepth))
	}
	return nil
}
