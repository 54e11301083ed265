package evidence

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"gopkg.in/yaml.v3"
)

// controlsYAML is the control matrix as data, so the mapping can be reviewed and
// changed without touching code.
//
//go:embed controls.yaml
var controlsYAML []byte

// Control is one agent control of the compliance guide's mapping table.
type Control struct {
	ID        string         `yaml:"id"`
	Name      string         `yaml:"name"`
	SOC2      []string       `yaml:"soc2"`
	ISO27001  []string       `yaml:"iso27001"`
	NISTAIRMF []string       `yaml:"nist_ai_rmf"`
	Kinds     []KindSelector `yaml:"kinds"`  // the evidence that proves the control
	Fields    []string       `yaml:"fields"` // event fields the guide names as its evidence
}

// KindSelector picks the events of one kind, optionally only those with one conflict
// reason (e.g. conflict events with LOCK_BUSY).
type KindSelector struct {
	Kind     Kind   `yaml:"kind"`
	Conflict string `yaml:"conflict,omitempty"`
}

// String names the selector as the design does, e.g. "conflict (LOCK_BUSY)".
func (s KindSelector) String() string {
	if s.Conflict == "" {
		return string(s.Kind)
	}
	return string(s.Kind) + " (" + s.Conflict + ")"
}

// Matches reports whether e is evidence of this selector.
func (s KindSelector) Matches(e *Event) bool {
	return e.Kind == s.Kind && (s.Conflict == "" || e.Conflict == s.Conflict)
}

// Matches reports whether e is evidence of control c.
func (c *Control) Matches(e *Event) bool {
	for _, s := range c.Kinds {
		if s.Matches(e) {
			return true
		}
	}
	return false
}

func (c Control) clone() Control {
	c.SOC2 = slices.Clone(c.SOC2)
	c.ISO27001 = slices.Clone(c.ISO27001)
	c.NISTAIRMF = slices.Clone(c.NISTAIRMF)
	c.Kinds = slices.Clone(c.Kinds)
	c.Fields = slices.Clone(c.Fields)
	return c
}

var loadControls = sync.OnceValues(func() ([]Control, error) { return parseControls(controlsYAML) })

// Controls returns the control matrix, in the mapping's order. The embedded mapping is
// checked by the package tests, so it is never empty in a released binary.
func Controls() []Control {
	cs, err := loadControls()
	if err != nil {
		return nil
	}
	out := make([]Control, len(cs))
	for i, c := range cs {
		out[i] = c.clone()
	}
	return out
}

// parseControls decodes the mapping strictly: unknown keys, unknown kinds, unknown
// event fields, duplicate ids and empty reference lists are errors.
func parseControls(data []byte) ([]Control, error) {
	var doc struct {
		Controls []Control `yaml:"controls"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("evidence: control matrix: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("evidence: control matrix: more than one YAML document")
	}
	if len(doc.Controls) == 0 {
		return nil, errors.New("evidence: control matrix: no controls")
	}
	known := (&Event{AuthMethod: "token"}).fields() // every member, the optional ones too
	seen := map[string]bool{}
	for i, c := range doc.Controls {
		if err := checkControl(c, known); err != nil {
			return nil, fmt.Errorf("evidence: control matrix: control %d (%q): %w", i, c.ID, err)
		}
		if seen[c.ID] {
			return nil, fmt.Errorf("evidence: control matrix: duplicate control id %q", c.ID)
		}
		seen[c.ID] = true
	}
	return doc.Controls, nil
}

func checkControl(c Control, known map[string]any) error {
	switch {
	case c.ID == "" || c.Name == "":
		return errors.New("id and name are required")
	case len(c.SOC2) == 0 || len(c.ISO27001) == 0 || len(c.NISTAIRMF) == 0:
		return errors.New("soc2, iso27001 and nist_ai_rmf references are required")
	case len(c.Kinds) == 0 || len(c.Fields) == 0:
		return errors.New("kinds and fields are required")
	}
	for _, s := range c.Kinds {
		if Required(s.Kind) == nil {
			return fmt.Errorf("unknown event kind %q", s.Kind)
		}
		if s.Conflict != "" && !slices.Contains(Required(s.Kind), "conflict") {
			return fmt.Errorf("kind %q carries no conflict reason to select on", s.Kind)
		}
	}
	for _, f := range c.Fields {
		if _, ok := known[f]; !ok {
			return fmt.Errorf("unknown event field %q", f)
		}
	}
	return nil
}

// ControlCount is a control with the number of events that evidence it and how many of
// those lack a required field.
type ControlCount struct {
	Control
	Events     int64
	Incomplete int64
}

// MatrixTally counts events per control one at a time, so a large window can be
// streamed through it instead of held in memory.
type MatrixTally struct {
	counts []ControlCount
}

// NewMatrixTally returns a tally with every control at zero.
func NewMatrixTally() *MatrixTally {
	cs := Controls()
	t := &MatrixTally{counts: make([]ControlCount, len(cs))}
	for i, c := range cs {
		t.counts[i].Control = c
	}
	return t
}

// Add counts e under every control it evidences; one event may evidence several (an
// approval proves both approval integrity and idempotency).
func (t *MatrixTally) Add(e *Event) {
	var incomplete bool
	checked := false
	for i := range t.counts {
		c := &t.counts[i]
		if !c.Control.Matches(e) {
			continue
		}
		if !checked {
			incomplete, checked = Validate(e) != nil, true
		}
		c.Events++
		if incomplete {
			c.Incomplete++
		}
	}
}

// Counts returns the counts so far, in the mapping's order.
func (t *MatrixTally) Counts() []ControlCount {
	out := make([]ControlCount, len(t.counts))
	for i, c := range t.counts {
		out[i] = c
		out[i].Control = c.Control.clone()
	}
	return out
}

// Matrix counts events per control: how many evidence it and how many of those are
// incomplete (fail Validate).
func Matrix(events []Event) []ControlCount {
	t := NewMatrixTally()
	for i := range events {
		t.Add(&events[i])
	}
	return t.Counts()
}
