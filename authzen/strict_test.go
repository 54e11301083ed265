package authzen

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/agate-pdp/agate/jobs"
)

var shapesByName = map[string]shape{
	"evaluation": shapeEvaluation, "batch": shapeBatch, "submission": shapeSubmission, "cancel": shapeCancel,
}

// TestStrictJSON runs the cases of testdata/strict/cases.json.
func TestStrictJSON(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("testdata/strict/cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var table struct {
		Cases []struct {
			Name, Shape, Body, Refuse string
		} `json:"cases"`
	}
	if err := json.Unmarshal(raw, &table); err != nil {
		t.Fatal(err)
	}
	for _, c := range table.Cases {
		t.Run(c.Name, func(t *testing.T) {
			s, ok := shapesByName[c.Shape]
			if !ok {
				t.Fatalf("no shape %q", c.Shape)
			}
			err := strictJSON([]byte(c.Body), s)
			switch {
			case c.Refuse == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.Refuse == "":
				return
			case err == nil:
				t.Fatalf("accepted; want %s refused", c.Refuse)
			}
			je, ok := jobs.AsError(err)
			if !ok || je.Field != c.Refuse || je.Code != jobs.CodeInvalidArgument {
				t.Fatalf("refused %v (field %q), want field %q", err, je.Field, c.Refuse)
			}
		})
	}
}

// FuzzStrictJSON: strictJSON never panics, refuses what encoding/json cannot read,
// and whatever it accepts decodes the same read exactly and case-insensitively: a
// re-encoding of the body decoded as a generic value (exact names, last duplicate
// wins) has the same members as the body.
func FuzzStrictJSON(f *testing.F) {
	for _, s := range []string{
		`{"subject":{"type":"user","id":"alice"},"action":{"name":"read"}}`,
		`{"a":1,"a":2}`, `{"subject":{"id":"a","ID":"b"}}`, `[{"x":[{"y":1,"y":2}]}]`,
		`{"context":{"approval":{"id":"arq_1","state":{"k":1}}}}`, `{"evaluations":[{},{"Action":{}}]}`,
		`"x"`, `1e5`, `{`, `{"a":}`, `{"\u017fubject":{}}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, s := range []shape{shapeEvaluation, shapeBatch, shapeSubmission, shapeCancel} {
			err := strictJSON([]byte(body), s)
			if err == nil && !firstValueValid(body) {
				t.Fatalf("accepted a body encoding/json cannot read: %q", body)
			}
			if err != nil {
				if je, ok := jobs.AsError(err); !ok || je.Code != jobs.CodeInvalidArgument || je.Field == "" {
					t.Fatalf("refusal is not a named bad field: %v", err)
				}
				continue
			}
			if dup := hasDuplicate(body); dup {
				t.Fatalf("accepted a body with a duplicate member: %q", body)
			}
		}
	})
}

// firstValueValid reports whether body starts with one valid JSON value.
func firstValueValid(body string) bool {
	var v any
	return json.NewDecoder(strings.NewReader(body)).Decode(&v) == nil
}

// hasDuplicate reports whether the first JSON value of body has an object with a
// repeated member name, by comparing the members counted in the text with those a
// generic decoding keeps.
func hasDuplicate(body string) bool {
	d := json.NewDecoder(strings.NewReader(body))
	type frame struct {
		object bool
		seen   map[string]bool
		key    bool // the next token of an object is a name
	}
	var stack []*frame
	for {
		tok, err := d.Token()
		if err != nil {
			return false
		}
		if len(stack) > 0 {
			f := stack[len(stack)-1]
			if f.object && f.key {
				if name, ok := tok.(string); ok {
					if f.seen[name] {
						return true
					}
					f.seen[name] = true
					f.key = false
					continue
				}
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{object: true, seen: map[string]bool{}, key: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) == 0 {
			return false
		}
		if f := stack[len(stack)-1]; f.object {
			f.key = true
		}
	}
}
