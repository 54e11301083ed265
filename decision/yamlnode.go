package decision

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// parser walks yaml.Node trees and collects every problem it finds, each
// with its line and field path, so one run reports them all.
type parser struct {
	errs []error
	// strict refuses service roles as approver roles (a new policy); otherwise (a stored
	// snapshot) each is a warning in serviceRoles and its approvals are refused later.
	strict       bool
	serviceRoles []Warning
}

func (p *parser) errorf(n *yaml.Node, field, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.errs = append(p.errs, &PolicyError{Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) err() error {
	return errors.Join(p.errs...)
}

// decodeDocument parses src as exactly one YAML document and returns its
// root node (nil for an empty document).
func decodeDocument(src []byte) (root *yaml.Node, err error) {
	// yaml.v3 is not expected to panic, but a parser fed untrusted input
	// must not take the process down with it.
	defer func() {
		if r := recover(); r != nil {
			root, err = nil, &PolicyError{Msg: fmt.Sprintf("invalid YAML: %v", r)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, yamlError(err, src)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, &PolicyError{Line: extra.Line, Msg: "only one YAML document is allowed"}
	case !errors.Is(err, io.EOF):
		return nil, yamlError(err, src)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError turns a yaml.v3 syntax error into a PolicyError with its line.
func yamlError(err error, src []byte) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		// yaml.v3 numbers a parser error's line from 0 (the start of the collection it
		// was parsing) and a scanner error's from 1; its parser errors are the
		// "did not find expected …" and "found undefined tag handle" ones.
		if strings.HasPrefix(m[2], "did not find expected") || strings.HasPrefix(m[2], "found undefined tag handle") {
			line++
		}
		// An error at the end of the input belongs to the last line there is.
		last := bytes.Count(src, []byte("\n"))
		if len(src) > 0 && src[len(src)-1] != '\n' {
			last++
		}
		line = max(1, min(line, last))
		return &PolicyError{Line: line, Msg: "invalid YAML: " + m[2]}
	}
	return &PolicyError{Msg: "invalid YAML: " + trimYAMLPrefix(msg)}
}

func trimYAMLPrefix(s string) string {
	if len(s) > 6 && s[:6] == "yaml: " {
		return s[6:]
	}
	return s
}

// checkPlain rejects aliases and merge keys anywhere in the tree: the
// language has no use for them, and following aliases would let a small file
// expand into a huge policy.
func (p *parser) checkPlain(n *yaml.Node) {
	switch n.Kind {
	case yaml.AliasNode:
		p.errorf(n, "", "YAML aliases are not supported")
		return
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
				p.errorf(k, "", "YAML merge keys (<<) are not supported")
			}
		}
	}
	for _, c := range n.Content {
		p.checkPlain(c)
	}
}

// entry is one key/value pair of a mapping.
type entry struct {
	name     string
	key, val *yaml.Node
}

// mapping reads a mapping node. It reports a node that is not a mapping,
// non-scalar and duplicate keys, and keys outside allowed (nil allows any
// key). It returns the valid entries in document order.
func (p *parser) mapping(n *yaml.Node, field string, allowed ...string) ([]entry, bool) {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, field, "must be a mapping, not %s", describe(n))
		return nil, false
	}
	seen := make(map[string]bool, len(n.Content)/2)
	out := make([]entry, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.errorf(k, field, "keys must be plain names, not %s", describe(k))
			continue
		}
		name := k.Value
		if seen[name] {
			p.errorf(k, join(field, name), "duplicate key")
			continue
		}
		seen[name] = true
		if allowed != nil && !contains(allowed, name) {
			p.errorf(k, join(field, name), "unknown key (want one of %s)", listWords(allowed))
			continue
		}
		out = append(out, entry{name: name, key: k, val: v})
	}
	return out, true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func listWords(words []string) string {
	var b bytes.Buffer
	for i, w := range words {
		switch {
		case i == 0:
		case i == len(words)-1:
			b.WriteString(" or ")
		default:
			b.WriteString(", ")
		}
		b.WriteString(w)
	}
	return b.String()
}

func join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func index(parent string, i int) string {
	return fmt.Sprintf("%s[%d]", parent, i)
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names a node's type for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!bool":
			return "a bool (" + n.Value + ")"
		case "!!int", "!!float":
			return "a number (" + n.Value + ")"
		case "!!str", "!!timestamp":
			return "a string"
		}
		return "a value tagged " + n.ShortTag()
	}
	return "empty"
}

// str reads a string scalar. Numbers and bools are refused rather than
// converted, so `decision: yes` or `id: 12` cannot mean something else.
func (p *parser) str(n *yaml.Node, field string) (string, bool) {
	if n.Kind == yaml.ScalarNode {
		switch n.ShortTag() {
		case "!!str", "!!timestamp":
			return n.Value, true
		}
	}
	p.errorf(n, field, "must be a string, not %s", describe(n))
	return "", false
}

func (p *parser) boolean(n *yaml.Node, field string) (bool, bool) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!bool" {
		var b bool
		if err := n.Decode(&b); err == nil {
			return b, true
		}
	}
	p.errorf(n, field, "must be true or false, not %s", describe(n))
	return false, false
}

func (p *parser) integer(n *yaml.Node, field string) (int, bool) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		var i int
		if err := n.Decode(&i); err == nil {
			return i, true
		}
	}
	p.errorf(n, field, "must be an integer, not %s", describe(n))
	return 0, false
}

// scalarValue reads a label value: a string, bool or finite number.
func (p *parser) scalarValue(n *yaml.Node, field string) (scalar, bool) {
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, field, "value must be a string, bool or number, not %s", describe(n))
		return scalar{}, false
	}
	switch n.ShortTag() {
	case "!!str", "!!timestamp":
		return stringScalar(n.Value), true
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err == nil {
			return boolScalar(b), true
		}
	case "!!int", "!!float":
		var v any
		if err := n.Decode(&v); err == nil {
			if s, ok := yamlNumber(v); ok {
				return s, true
			}
			p.errorf(n, field, "number %s must be finite and, if an integer, within ±2^53", n.Value)
			return scalar{}, false
		}
	}
	p.errorf(n, field, "value must be a string, bool or number, not %s", describe(n))
	return scalar{}, false
}

func yamlNumber(v any) (scalar, bool) {
	switch x := v.(type) {
	case int:
		s, msg := intScalar(int64(x))
		return s, msg == ""
	case int64:
		s, msg := intScalar(x)
		return s, msg == ""
	case uint64:
		s, msg := uintScalar(x)
		return s, msg == ""
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return scalar{}, false
		}
		return numberScalar(x), true
	}
	return scalar{}, false
}
