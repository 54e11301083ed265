package canonical

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// TestRFC8785Numbers replays the number table of RFC 8785 Appendix B.
func TestRFC8785Numbers(t *testing.T) {
	t.Parallel()
	f, err := os.Open("testdata/rfc8785/numbers.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		bitsHex, want, ok := strings.Cut(line, ",")
		if !ok {
			t.Fatalf("bad line %q", line)
		}
		bits, err := strconv.ParseUint(bitsHex, 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		n++
		v := math.Float64frombits(bits)
		got, err := Append(nil, v)
		if want == "NaN" || want == "Infinity" {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("%s: Append(%v) = %q, %v; want *Error", bitsHex, v, got, err)
			}
			continue
		}
		if err != nil || string(got) != want {
			t.Errorf("%s: Append(%v) = %q, %v; want %q", bitsHex, v, got, err, want)
		}
		// The canonical text is in shortest form, so the exact rule accepts it
		// and leaves it unchanged.
		if got, err := Transform([]byte(want)); err != nil || string(got) != want {
			t.Errorf("Transform(%s) = %q, %v", want, got, err)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 26 {
		t.Errorf("read %d samples, want the RFC's 26", n)
	}
}

// TestRFC8785Examples replays the examples of RFC 8785 §3.2.2 and §3.2.3.
func TestRFC8785Examples(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"sample", "sorting"} {
		in := readFile(t, "testdata/rfc8785/"+name+".json")
		want := readFile(t, "testdata/rfc8785/"+name+".canonical")
		got, err := transform(nil, in, false)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: transform = %s, %v\nwant %s", name, got, err, want)
		}
	}
	// The §3.2.2 sample writes 333333333.33333329, which the RFC rounds to
	// 333333333.3333333; Transform refuses to change a value silently.
	_, err := Transform(readFile(t, "testdata/rfc8785/sample.json"))
	var ce *Error
	if !errors.As(err, &ce) || ce.Path != "numbers[0]" || !strings.Contains(ce.Msg, "333333333.33333329") {
		t.Errorf("Transform(sample) error = %v, want one at numbers[0]", err)
	}
	got, err := Transform(readFile(t, "testdata/rfc8785/sorting.json"))
	if want := readFile(t, "testdata/rfc8785/sorting.canonical"); err != nil || !bytes.Equal(got, want) {
		t.Errorf("Transform(sorting) = %s, %v\nwant %s", got, err, want)
	}
}

// TestTransformGolden checks testdata/transform/*.json against their .golden
// files; -update rewrites the goldens.
func TestTransformGolden(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/transform/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, file := range files {
		golden := strings.TrimSuffix(file, ".json") + ".golden"
		got, err := Transform(readFile(t, file))
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		if *update {
			if err := os.WriteFile(golden, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if want := readFile(t, golden); !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", file, got, want)
		}
		if again, err := Transform(got); err != nil || !bytes.Equal(again, got) {
			t.Errorf("%s: not idempotent: %s, %v", file, again, err)
		}
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var hashField = regexp.MustCompile(`"hash": "[^"]*"`)

// jobVector is one entry of testdata/jobhash.json. Canonical is written by
// hand, so the expected hash is computed independently of this package.
type jobVector struct {
	Name      string          `json:"name"`
	Topic     string          `json:"topic"`
	Actor     string          `json:"actor"`
	Labels    map[string]any  `json:"labels"`
	Payload   json.RawMessage `json:"payload,omitempty"`
	Canonical string          `json:"canonical"`
	Hash      string          `json:"hash"`
}

func TestJobHashGolden(t *testing.T) {
	t.Parallel()
	const file = "testdata/jobhash.json"
	dec := json.NewDecoder(bytes.NewReader(readFile(t, file)))
	dec.UseNumber() // label numbers reach JobHash as json.Number
	var vectors []jobVector
	if err := dec.Decode(&vectors); err != nil {
		t.Fatal(err)
	}
	for i, v := range vectors {
		got, err := JobHash(v.Topic, v.Actor, v.Labels, v.Payload)
		if err != nil {
			t.Errorf("%s: %v", v.Name, err)
			continue
		}
		if want := sha256Hex(v.Canonical); got != want {
			t.Errorf("%s: JobHash = %s, want %s (sha256 of the hand-written canonical form)", v.Name, got, want)
		}
		if c, err := Transform([]byte(v.Canonical)); err != nil || string(c) != v.Canonical {
			t.Errorf("%s: the hand-written canonical form is not canonical: %s, %v", v.Name, c, err)
		}
		if *update {
			vectors[i].Hash = got
			continue
		}
		if got != v.Hash {
			t.Errorf("%s: JobHash = %s, golden %s", v.Name, got, v.Hash)
		}
	}
	if *update {
		// Rewrite only the hash fields, keeping the hand-written layout.
		text := readFile(t, file)
		i := 0
		text = hashField.ReplaceAllFunc(text, func([]byte) []byte {
			i++
			return []byte(`"hash": "` + vectors[i-1].Hash + `"`)
		})
		if i != len(vectors) {
			t.Fatalf("found %d hash fields for %d vectors", i, len(vectors))
		}
		if err := os.WriteFile(file, text, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
