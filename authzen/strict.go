package authzen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// A body must mean one thing to every JSON reader. Go's encoding/json matches member
// names case-insensitively and keeps the last of duplicate members; a PEP, an agent's
// tool or another language may take the first, or match exactly. So before a body is
// decoded, strictJSON refuses a duplicate member name in any object at any depth, and
// a member whose name matches one the profile defines at that place only when case is
// ignored ("ID" for "id").

// shape names the members defined at one place of a request body, and the shapes of
// their values; "[]" is the shape of an array's items. A nil shape defines nothing:
// its members are free (properties, context values).
type shape map[string]shape

var (
	shapeEntity     = shape{"type": nil, "id": nil, "properties": nil}
	shapeAction     = shape{"name": nil, "properties": nil}
	shapeApproval   = shape{"id": nil, "approved_at": nil, "approved_until": nil, "state": nil}
	shapeContext    = shape{"approval": shapeApproval}
	shapeEvaluation = shape{"subject": shapeEntity, "resource": shapeEntity, "action": shapeAction, "context": shapeContext}
	shapeBatch      = with(shapeEvaluation, shape{
		"evaluations": {"[]": shapeEvaluation},
		"options":     {"evaluations_semantic": nil},
	})
	shapeSubmission = with(shapeEvaluation, shape{
		"denial": {"evaluation_id": nil, "evaluated_at": nil, "expires_at": nil, "reason": nil,
			"binding_token": nil, "template": nil},
		"requested_access": {"requested_until": nil},
		"client":           nil, "items": nil, "callback": nil,
	})
	shapeCancel = shape{"reason": nil, "comment": nil}
)

func with(a, b shape) shape {
	out := shape{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// strictJSON checks body, one JSON value, against s; the error is a bad request field
// naming the member path ("subject.ID", "evaluations[2].context.device").
func strictJSON(body []byte, s shape) error {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	return strictValue(d, s, "")
}

type strictFrame struct {
	object bool
	shape  shape
	path   string
	seen   map[string]struct{}
	index  int
}

// strictValue walks one value with d's tokens, iteratively: depth costs a frame, not a
// goroutine stack.
func strictValue(d *json.Decoder, s shape, path string) error {
	var stack []*strictFrame
	// open starts the value whose first token is tok, at path, of shape s.
	open := func(tok json.Token, s shape, path string) {
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &strictFrame{object: true, shape: s, path: path, seen: map[string]struct{}{}})
		case json.Delim('['):
			stack = append(stack, &strictFrame{shape: s, path: path})
		}
	}
	tok, err := d.Token()
	if err != nil {
		return malformed(err)
	}
	open(tok, s, path)
	for len(stack) > 0 {
		f := stack[len(stack)-1]
		tok, err := d.Token()
		if err != nil {
			return malformed(err)
		}
		if tok == json.Delim('}') || tok == json.Delim(']') {
			stack = stack[:len(stack)-1]
			continue
		}
		if !f.object {
			open(tok, f.shape["[]"], fmt.Sprintf("%s[%d]", f.path, f.index))
			f.index++
			continue
		}
		name, ok := tok.(string)
		if !ok {
			return malformed(errors.New("a member name is not a string"))
		}
		at := join(f.path, name)
		if _, dup := f.seen[name]; dup {
			return invalid(at, "member given more than once; a JSON reader may take either")
		}
		f.seen[name] = struct{}{}
		sub, defined := f.shape[name]
		if !defined {
			for k := range f.shape {
				if k != "[]" && strings.EqualFold(k, name) {
					return invalid(at, fmt.Sprintf("member name differs from %q only in case; names are case-sensitive", join(f.path, k)))
				}
			}
		}
		if tok, err = d.Token(); err != nil {
			return malformed(err)
		}
		open(tok, sub, at)
	}
	return nil
}

func join(path, name string) string {
	if name == "" {
		name = `""`
	}
	if path == "" {
		return name
	}
	return path + "." + name
}

func malformed(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return invalid("body", jsonProblem(err))
}
