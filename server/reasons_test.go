package server

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
)

// protoReasons reads job.proto's ErrorReason enum: every value's reason (without the
// prefix) and the keys of its "Metadata:" comment line.
func protoReasons(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "proto", "agate", "v1", "job.proto"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	value := regexp.MustCompile(`^ERROR_REASON_([A-Z_]+) = \d+;$`)
	out := map[string][]string{}
	in, meta, seen := false, []string(nil), false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "enum ErrorReason {":
			in = true
		case !in:
		case line == "}":
			return out
		case strings.HasPrefix(line, "// Metadata:"):
			list := strings.TrimSuffix(strings.TrimSpace(strings.TrimPrefix(line, "// Metadata:")), ".")
			meta, seen = nil, true
			if list != "none" {
				for _, k := range strings.Split(list, ",") {
					meta = append(meta, strings.TrimSpace(k))
				}
			}
		case value.MatchString(line):
			name := value.FindStringSubmatch(line)[1]
			if !seen {
				t.Errorf("job.proto: ERROR_REASON_%s has no Metadata: line", name)
			}
			out[name], meta, seen = meta, nil, false
		}
	}
	t.Fatal("job.proto: enum ErrorReason not found")
	return nil
}

// TestErrorReasonsMatchProto holds the reasons and metadata keys the server sends to
// what job.proto documents: the proto's comments, the generated enum and the server's
// table agree, and every reason and metadata key written in the code is documented
// (for the reason it goes with, where the code names both together).
func TestErrorReasonsMatchProto(t *testing.T) {
	t.Parallel()
	documentedByProto := protoReasons(t)
	for name := range agatev1.ErrorReason_value {
		if _, ok := documentedByProto[strings.TrimPrefix(name, "ERROR_REASON_")]; !ok {
			t.Errorf("generated enum value %s is not in job.proto: run make generate", name)
		}
	}
	if len(documentedByProto) != len(agatev1.ErrorReason_value) {
		t.Errorf("job.proto has %d reasons, the generated enum %d: run make generate", len(documentedByProto), len(agatev1.ErrorReason_value))
	}
	for reason, keys := range documentedByProto {
		got, ok := errorMetadata[reason]
		if !ok || !sameKeys(got, keys) {
			t.Errorf("reason %s: server table has %v (present %v), job.proto documents %v", reason, got, ok, keys)
		}
	}
	for reason := range errorMetadata {
		if _, ok := documentedByProto[reason]; !ok {
			t.Errorf("server table has reason %s, which job.proto does not document", reason)
		}
	}

	code := scanErrorUses(t, "../jobs", "../audit", ".")
	allKeys := map[string]bool{}
	for _, keys := range documentedByProto {
		for _, k := range keys {
			allKeys[k] = true
		}
	}
	for _, r := range code.reasons {
		if _, ok := documentedByProto[r.value]; !ok {
			t.Errorf("%s: reason %q is not in job.proto's ErrorReason", r.pos, r.value)
		}
	}
	used := map[string]bool{}
	for _, k := range code.keys {
		used[k.value] = true
		switch {
		case !allKeys[k.value]:
			t.Errorf("%s: metadata key %q is documented for no reason in job.proto", k.pos, k.value)
		case k.reason != "" && !slices.Contains(documentedByProto[k.reason], k.value):
			t.Errorf("%s: metadata key %q is not documented for reason %s", k.pos, k.value, k.reason)
		}
	}
	for k := range allKeys {
		if !used[k] {
			t.Errorf("job.proto documents metadata key %q, which the code never sends", k)
		}
	}
}

func sameKeys(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

type use struct {
	pos, value, reason string
}

type errorUses struct {
	reasons, keys []use
}

// scanErrorUses reads the non-test Go files of dirs and collects the reasons (constants
// named Reason*, and literals given as Reason or reason) and metadata keys (literal
// keys of Meta maps, and the key arguments of failed and aborted, with the reason they
// go with) they write.
func scanErrorUses(t *testing.T, dirs ...string) errorUses {
	t.Helper()
	fset := token.NewFileSet()
	var files []*ast.File
	consts := map[string]string{}
	for _, dir := range dirs {
		names, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, name, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
	}
	str := func(e ast.Expr) (string, bool) {
		if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			s, err := strconv.Unquote(lit.Value)
			return s, err == nil
		}
		return "", false
	}
	var out errorUses
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			if vs, ok := n.(*ast.ValueSpec); ok {
				for i, id := range vs.Names {
					if i < len(vs.Values) && strings.HasPrefix(id.Name, "Reason") {
						if s, ok := str(vs.Values[i]); ok {
							consts[id.Name] = s
							out.reasons = append(out.reasons, use{pos: fset.Position(id.Pos()).String(), value: s})
						}
					}
				}
			}
			return true
		})
	}
	reasonOf := func(e ast.Expr) string {
		switch x := e.(type) {
		case *ast.Ident:
			return consts[x.Name]
		case *ast.SelectorExpr:
			return consts[x.Sel.Name]
		}
		s, _ := str(e)
		return s
	}
	key := func(e ast.Expr, reason string) {
		if s, ok := str(e); ok {
			out.keys = append(out.keys, use{pos: fset.Position(e.Pos()).String(), value: s, reason: reason})
		}
	}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.KeyValueExpr:
				id, ok := x.Key.(*ast.Ident)
				if !ok {
					break
				}
				switch id.Name {
				case "Reason", "reason":
					if s, ok := str(x.Value); ok && s == strings.ToUpper(s) {
						out.reasons = append(out.reasons, use{pos: fset.Position(x.Pos()).String(), value: s})
					}
				case "Meta":
					if cl, ok := x.Value.(*ast.CompositeLit); ok {
						for _, el := range cl.Elts {
							if kv, ok := el.(*ast.KeyValueExpr); ok {
								key(kv.Key, "")
							}
						}
					}
				}
			case *ast.IndexExpr:
				switch m := x.X.(type) {
				case *ast.SelectorExpr:
					if m.Sel.Name == "Meta" {
						key(x.Index, "")
					}
				case *ast.Ident:
					if m.Name == "meta" {
						key(x.Index, "")
					}
				}
			case *ast.CallExpr:
				if fn, ok := x.Fun.(*ast.Ident); ok && (fn.Name == "failed" || fn.Name == "aborted") && len(x.Args) > 2 {
					reason := reasonOf(x.Args[0])
					for i := 2; i < len(x.Args); i += 2 {
						key(x.Args[i], reason)
					}
				}
			}
			return true
		})
	}
	return out
}
