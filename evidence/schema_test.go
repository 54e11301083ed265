package evidence

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestValidatePerKind proves validation fails closed for every kind: a complete event
// passes, blanking any required field fails naming exactly that field, and blanking a
// field the kind does not require still passes.
func TestValidatePerKind(t *testing.T) {
	t.Parallel()
	for _, k := range Kinds {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			full := fullEvent(k)
			if err := Validate(&full); err != nil {
				t.Fatalf("complete %s event: %v", k, err)
			}
			req := append(Required(k), "seq")
			for _, f := range req {
				clear, ok := blank[f]
				if !ok {
					t.Fatalf("schema requires %q, which the test cannot blank", f)
				}
				e := fullEvent(k)
				clear(&e)
				err := Validate(&e)
				var mf *MissingFieldsError
				if !errors.As(err, &mf) || !errors.Is(err, ErrIncomplete) {
					t.Fatalf("without %s: got %v, want a MissingFieldsError", f, err)
				}
				if !slices.Equal(mf.Fields, []string{f}) {
					t.Errorf("without %s: missing %v, want [%s]", f, mf.Fields, f)
				}
			}
			for f, clear := range blank {
				if slices.Contains(req, f) {
					continue
				}
				e := fullEvent(k)
				clear(&e)
				if err := Validate(&e); err != nil {
					t.Errorf("%s does not require %s, but without it: %v", k, f, err)
				}
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		edit func(*Event)
		want []string
	}{
		{"unknown kind", func(e *Event) { e.Kind = "audit" }, []string{"kind"}},
		{"negative time", func(e *Event) { e.At = -1 }, []string{"at"}},
		{"negative approval time", func(e *Event) { e.ApprovedAt = -1 }, []string{"approved_at"}},
		{"negative seq", func(e *Event) { e.Seq = -3 }, []string{"seq"}},
		{"several missing, in schema order", func(e *Event) { e.JobHash, e.EventID, e.ApprovedBy = "", "", "" },
			[]string{"event_id", "job_hash", "approved_by"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := fullEvent(KindApproval)
			c.edit(&e)
			var mf *MissingFieldsError
			if err := Validate(&e); !errors.As(err, &mf) || !slices.Equal(mf.Fields, c.want) {
				t.Fatalf("got %v, want missing %v", err, c.want)
			}
		})
	}
}

// TestSealFailsClosed: an incomplete event is never given a hash.
func TestSealFailsClosed(t *testing.T) {
	t.Parallel()
	e := fullEvent(KindPublish)
	e.Attempt = 0
	err := e.Seal(3, "sha256:prev")
	if !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "publish event is missing attempt") {
		t.Fatalf("Seal of incomplete event: %v", err)
	}
	if e.Hash != "" {
		t.Fatalf("incomplete event was hashed: %s", e.Hash)
	}
}

// TestHashCoversEveryField: changing any hashed field changes the hash, so no field
// can be edited undetected.
func TestHashCoversEveryField(t *testing.T) {
	t.Parallel()
	base := fullEvent(KindDecision)
	base.PrevHash, base.Repeat = "sha256:prev", true
	h0, err := base.ComputeHash()
	if err != nil {
		t.Fatal(err)
	}
	for name := range base.fields() {
		e := base
		e.MatchedRules = slices.Clone(base.MatchedRules)
		if clear, ok := blank[name]; ok {
			clear(&e)
		} else if name == "prev_hash" {
			e.PrevHash = ""
		} else {
			t.Fatalf("no way to change field %q in this test", name)
		}
		h, err := e.ComputeHash()
		if err != nil {
			t.Fatal(err)
		}
		if h == h0 {
			t.Errorf("changing %s leaves the hash unchanged", name)
		}
	}
}
