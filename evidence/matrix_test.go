package evidence

import (
	"reflect"
	"strings"
	"testing"
)

// TestControlsMatchDesign pins the embedded mapping to the design's table.
func TestControlsMatchDesign(t *testing.T) {
	t.Parallel()
	cs, err := parseControls(controlsYAML)
	if err != nil {
		t.Fatalf("embedded control matrix: %v", err)
	}
	sel := func(ks ...string) []KindSelector {
		var out []KindSelector
		for _, k := range ks {
			kind, conflict, _ := strings.Cut(k, ":")
			out = append(out, KindSelector{Kind: Kind(kind), Conflict: conflict})
		}
		return out
	}
	want := []Control{
		{ID: "policy-gate", Name: "submit-time policy gate",
			SOC2: []string{"CC6.1", "CC6.3"}, ISO27001: []string{"A.5.15", "A.8.15", "A.8.16"},
			NISTAIRMF: []string{"MANAGE 1.1", "MANAGE 4.1"},
			Kinds:     sel("decision", "policy_activation"),
			Fields:    []string{"decision", "policy_snapshot", "reason", "at", "actor"}},
		{ID: "approval-integrity", Name: "approval with snapshot + hash integrity",
			SOC2: []string{"CC7.2", "CC7.3"}, ISO27001: []string{"A.5.35", "A.5.37", "A.8.32"},
			NISTAIRMF: []string{"GOVERN 2.1", "MAP 3.2", "MANAGE 3.3"},
			Kinds:     sel("approval", "rejection", "conflict", "publish", "expiry"),
			Fields:    []string{"approval_required", "job_hash", "policy_snapshot", "conflict"}},
		{ID: "idempotent-approval", Name: "idempotent approve/reject under lock",
			SOC2: []string{"CC7.1", "CC8.1"}, ISO27001: []string{"A.8.33", "A.8.34"},
			NISTAIRMF: []string{"MEASURE 2.2", "MANAGE 2.3"},
			Kinds:     sel("approval", "rejection", "conflict:LOCK_BUSY", "refusal"),
			Fields:    []string{"repeat", "conflict"}},
		{ID: "replay", Name: "replay after worker outage",
			SOC2: []string{"CC7.2", "CC7.4"}, ISO27001: []string{"A.8.14", "A.8.17"},
			NISTAIRMF: []string{"MANAGE 4.3"},
			Kinds:     sel("replay", "outcome", "publish"),
			Fields:    []string{"attempt", "replay_reason_code", "reason", "status"}},
	}
	if !reflect.DeepEqual(cs, want) {
		t.Fatalf("control matrix:\n got %+v\nwant %+v", cs, want)
	}
	got := Controls()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Controls() differs from the parsed mapping")
	}
	got[0].SOC2[0] = "changed"
	if Controls()[0].SOC2[0] != "CC6.1" {
		t.Fatal("Controls() shares its slices with the caller")
	}
	if s := want[2].Kinds[2].String(); s != "conflict (LOCK_BUSY)" {
		t.Errorf("selector string %q", s)
	}
}

func TestParseControlsStrict(t *testing.T) {
	t.Parallel()
	good := `controls:
  - id: a
    name: A
    soc2: [CC1]
    iso27001: [A.1]
    nist_ai_rmf: [MAP 1.1]
    kinds: [{kind: conflict, conflict: LOCK_BUSY}]
    fields: [conflict]
`
	if _, err := parseControls([]byte(good)); err != nil {
		t.Fatalf("valid mapping: %v", err)
	}
	cases := map[string]string{
		"unknown key":         strings.Replace(good, "name: A", "name: A\n    owner: x", 1),
		"unknown kind":        strings.Replace(good, "kind: conflict,", "kind: audit,", 1),
		"no conflict field":   strings.Replace(good, "kind: conflict,", "kind: approval,", 1),
		"unknown field":       strings.Replace(good, "fields: [conflict]", "fields: [conflict_status]", 1),
		"no references":       strings.Replace(good, "soc2: [CC1]", "soc2: []", 1),
		"no kinds":            strings.Replace(good, "kinds: [{kind: conflict, conflict: LOCK_BUSY}]", "kinds: []", 1),
		"no id":               strings.Replace(good, "id: a", "id: ''", 1),
		"duplicate id":        good + strings.TrimPrefix(good, "controls:\n"),
		"two documents":       good + "---\n" + good,
		"empty":               "controls: []\n",
		"not a list":          "controls: {}\n",
		"wrong type for refs": strings.Replace(good, "soc2: [CC1]", "soc2: CC1", 1),
	}
	for name, doc := range cases {
		if _, err := parseControls([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestMatrixCounts counts a hand-built fixture; the expected figures are counted by
// hand from the list below.
func TestMatrixCounts(t *testing.T) {
	t.Parallel()
	ev := func(k Kind, edit func(*Event)) Event {
		e := fullEvent(k)
		if edit != nil {
			edit(&e)
		}
		return e
	}
	conflict := func(code string) func(*Event) { return func(e *Event) { e.Conflict = code } }
	events := []Event{
		ev(KindDecision, nil),
		ev(KindDecision, nil),
		ev(KindDecision, func(e *Event) { e.Reason = "" }), // incomplete
		ev(KindPolicyActivation, nil),
		ev(KindApproval, nil),
		ev(KindApproval, func(e *Event) { e.Repeat = true }),
		ev(KindRejection, nil),
		ev(KindConflict, conflict("SNAPSHOT_DRIFT")),
		ev(KindConflict, conflict("LOCK_BUSY")),
		ev(KindConflict, func(e *Event) { e.Conflict, e.JobHash = "LOCK_BUSY", "" }), // incomplete
		ev(KindPublish, nil),
		ev(KindPublish, nil),
		ev(KindExpiry, nil),
		ev(KindRefusal, conflict("SELF_APPROVAL")),
		ev(KindReplay, func(e *Event) { e.ReplayReasonCode = "" }), // incomplete
		ev(KindOutcome, nil),
		ev(KindOutcome, nil),
		ev(KindCancel, nil), // evidences no control
	}
	// policy-gate: 3 decision + 1 activation; approval-integrity: 2 approval + 1
	// rejection + 3 conflict + 2 publish + 1 expiry; idempotent-approval: 2 approval +
	// 1 rejection + 2 LOCK_BUSY + 1 refusal; replay: 1 replay + 2 outcome + 2 publish.
	want := map[string][2]int64{
		"policy-gate":         {4, 1},
		"approval-integrity":  {9, 1},
		"idempotent-approval": {6, 1},
		"replay":              {5, 1},
	}
	got := Matrix(events)
	if len(got) != len(want) {
		t.Fatalf("%d controls, want %d", len(got), len(want))
	}
	for _, c := range got {
		if w := want[c.ID]; c.Events != w[0] || c.Incomplete != w[1] {
			t.Errorf("%s: %d events, %d incomplete; want %d, %d", c.ID, c.Events, c.Incomplete, w[0], w[1])
		}
	}
	tally := NewMatrixTally()
	for i := range events {
		tally.Add(&events[i])
	}
	if !reflect.DeepEqual(tally.Counts(), got) {
		t.Error("MatrixTally and Matrix disagree")
	}
	if empty := Matrix(nil); len(empty) != 4 || empty[0].Events != 0 || empty[0].ID != "policy-gate" {
		t.Errorf("empty matrix: %+v", empty)
	}
}
