package main

import "testing"

func TestKind(t *testing.T) {
	for _, c := range []struct{ query, want string }{
		{"begin isolation level serializable", "begin"},
		{"COMMIT", "commit"},
		{"  SELECT job_id FROM jobs", "select"},
		{"/* tag */ INSERT INTO evidence VALUES ($1)", "insert"},
		{"UPDATE jobs SET status = $1", "update"},
	} {
		if got := kind(c.query); got != c.want {
			t.Errorf("kind(%q) = %q, want %q", c.query, got, c.want)
		}
	}
}

// TestDiff counts what a distributed store would write: new and removed index entries,
// and primary rows rewritten in place.
func TestDiff(t *testing.T) {
	m := &monitor{indexes: []index{
		{table: "jobs", name: "jobs_pkey", primary: true, cols: []string{"job_id"}},
		{table: "jobs", name: "jobs_status", cols: []string{"status", "job_id"}},
	}}
	a := snapshot{entries: map[string]map[string]entry{
		"jobs_pkey":   {"(a)": {"1", 100}, "(b)": {"2", 100}},
		"jobs_status": {"(pending,a)": {"", 20}, "(pending,b)": {"", 20}},
	}}
	b := snapshot{entries: map[string]map[string]entry{
		"jobs_pkey":   {"(a)": {"1", 100}, "(b)": {"3", 110}, "(c)": {"4", 90}},
		"jobs_status": {"(pending,a)": {"", 20}, "(approved,b)": {"", 21}, "(pending,c)": {"", 20}},
	}}
	got := m.diff(a, b)
	if len(got) != 2 {
		t.Fatalf("%d indexes changed, want 2", len(got))
	}
	pk, sec := got[0], got[1]
	if pk.added != 1 || pk.changed != 1 || pk.removed != 0 || pk.bytesAdded+pk.bytesChanged != 200 {
		t.Errorf("primary: %+v", pk)
	}
	if sec.added != 2 || sec.removed != 1 || sec.bytesAdded != 41 {
		t.Errorf("secondary: %+v", sec)
	}
}
