package evidence

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// found is the part of a Problem a tamper test pins down.
type found struct {
	Kind    ProblemKind
	Seq     int64
	EventID string
}

func summarize(ps []Problem) []found {
	var out []found
	for _, p := range ps {
		out = append(out, found{p.Kind, p.Seq, p.EventID})
	}
	return out
}

func without(evs []Event, seqs ...int64) []Event {
	return slices.DeleteFunc(evs, func(e Event) bool { return slices.Contains(seqs, e.Seq) })
}

// TestVerifyChainTamper tampers with a six-event chain the ways SQL access allows and
// expects exactly the problems listed.
func TestVerifyChainTamper(t *testing.T) {
	t.Parallel()
	const job = "job_1"
	id := func(seq int) string { return sealedChain(t, job, 6)[seq-1].EventID }
	cases := []struct {
		name   string
		tamper func(t *testing.T, evs []Event) []Event
		want   []found
	}{
		{"intact", func(t *testing.T, evs []Event) []Event { return evs }, nil},
		{"read out of seq order", func(t *testing.T, evs []Event) []Event {
			slices.Reverse(evs)
			return evs
		}, nil},

		{"edit a field", func(t *testing.T, evs []Event) []Event {
			evs[2].Reason = "approved by policy"
			return evs
		}, []found{{Modified, 3, id(3)}}},
		{"edit the head's job hash", func(t *testing.T, evs []Event) []Event {
			evs[5].JobHash = "sha256:0000"
			return evs
		}, []found{{Modified, 6, id(6)}}},
		{"edit the hash column", func(t *testing.T, evs []Event) []Event {
			evs[2].Hash = "sha256:feed"
			return evs
		}, []found{{Modified, 3, id(3)}}},
		{"edit the prev_hash column", func(t *testing.T, evs []Event) []Event {
			evs[2].PrevHash = evs[0].Hash
			return evs
		}, []found{{Modified, 3, id(3)}}},

		{"drop an event", func(t *testing.T, evs []Event) []Event { return without(evs, 3) },
			[]found{{Deleted, 3, ""}}},
		{"drop the first event", func(t *testing.T, evs []Event) []Event { return without(evs, 1) },
			[]found{{Deleted, 1, ""}}},
		{"drop two events", func(t *testing.T, evs []Event) []Event { return without(evs, 3, 4) },
			[]found{{Deleted, 3, ""}, {Deleted, 4, ""}}},

		{"insert a forged event at a taken seq", func(t *testing.T, evs []Event) []Event {
			return append(evs, forge(t, job, 4, evs[2].Hash))
		}, []found{{Inserted, 4, job + "-forged"}}},
		{"insert a forged event at the head's seq", func(t *testing.T, evs []Event) []Event {
			return append(evs, forge(t, job, 6, evs[4].Hash))
		}, []found{{Inserted, 6, job + "-forged"}}},
		{"append a forged event that forks the chain", func(t *testing.T, evs []Event) []Event {
			return append(evs, forge(t, job, 7, evs[1].Hash))
		}, []found{{Inserted, 7, job + "-forged"}}},
		{"append a forged event that links to nothing", func(t *testing.T, evs []Event) []Event {
			return append(evs, forge(t, job, 7, "sha256:beef"))
		}, []found{{Inserted, 7, job + "-forged"}}},
		{"append a forged event that claims to start the chain", func(t *testing.T, evs []Event) []Event {
			return append(evs, forge(t, job, 7, ""))
		}, []found{{Inserted, 7, job + "-forged"}}},
		{"insert a forged event before the start", func(t *testing.T, evs []Event) []Event {
			return append(evs, forge(t, job, 0, ""))
		}, []found{{Inserted, 0, job + "-forged"}}},
		{"copy a row", func(t *testing.T, evs []Event) []Event { return append(evs, evs[3]) },
			[]found{{Inserted, 4, id(4)}}},

		{"swap two events' seqs", func(t *testing.T, evs []Event) []Event {
			evs[1].Seq, evs[4].Seq = evs[4].Seq, evs[1].Seq
			return evs
		}, []found{{Reordered, 2, id(5)}, {Reordered, 5, id(2)}}},
		{"swap the first two", func(t *testing.T, evs []Event) []Event {
			evs[0].Seq, evs[1].Seq = 2, 1
			return evs
		}, []found{{Reordered, 1, id(2)}, {Reordered, 2, id(1)}}},
		{"swap the last two", func(t *testing.T, evs []Event) []Event {
			evs[4].Seq, evs[5].Seq = 6, 5
			return evs
		}, []found{{Reordered, 5, id(6)}, {Reordered, 6, id(5)}}},
		{"move an event to a free seq", func(t *testing.T, evs []Event) []Event {
			evs[3].Seq = 40
			return evs
		}, []found{{Reordered, 40, id(4)}}},

		// Splicing a forged event in means renumbering the rest, which shows too.
		{"splice a forged event in", func(t *testing.T, evs []Event) []Event {
			for i := 3; i < len(evs); i++ {
				evs[i].Seq++
			}
			return append(evs, forge(t, job, 4, evs[2].Hash))
		}, []found{{Inserted, 4, job + "-forged"}, {Reordered, 5, id(4)}, {Reordered, 6, id(5)}, {Reordered, 7, id(6)}}},
		// Rewriting an event and recomputing its hash breaks its successor's link;
		// the chain alone cannot tell which of the two is genuine (a checkpoint can).
		{"rewrite an event with a recomputed hash", func(t *testing.T, evs []Event) []Event {
			evs[2].Reason = "approved by policy"
			rehash(t, &evs[2])
			return evs
		}, []found{{Inserted, 4, id(4)}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got := VerifyChain(c.tamper(t, sealedChain(t, job, 6)))
			if !slices.Equal(summarize(got), c.want) {
				t.Fatalf("problems:\n%s\nwant %v", dump(got), c.want)
			}
			for _, p := range got {
				if p.JobID != job || p.Detail == "" {
					t.Errorf("problem lacks job or detail: %+v", p)
				}
			}
		})
	}
}

func dump(ps []Problem) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "  %s seq %d %s: %s\n", p.Kind, p.Seq, p.EventID, p.Detail)
	}
	return b.String()
}

func TestVerifyChainEdges(t *testing.T) {
	t.Parallel()
	if got := VerifyChain(nil); got != nil {
		t.Errorf("empty chain: %v", got)
	}
	one := sealedChain(t, "job_x", 1)
	if got := VerifyChain(one); got != nil {
		t.Errorf("one-event chain: %v", got)
	}
	// A forged seq far ahead reports the gap as one range, not billions of problems.
	evs := append(sealedChain(t, "job_x", 2), forge(t, "job_x", 1<<40, "sha256:beef"))
	got := VerifyChain(evs)
	if len(got) != 1 || got[0].Kind != Deleted || got[0].Seq != 3 || !strings.Contains(got[0].Detail, "to") {
		t.Errorf("far gap: %s", dump(got))
	}
	// The policy chain verifies like any other.
	pol := sealedChain(t, PolicyChain, 3)
	if got := VerifyChain(pol); got != nil {
		t.Errorf("policy chain: %v", got)
	}
}

func TestVerifyAgainstCheckpoint(t *testing.T) {
	t.Parallel()
	sealed := func(t *testing.T) (map[string]Head, map[string][]Event) {
		a, b := sealedChain(t, "job_a", 4), sealedChain(t, "job_b", 3)
		heads := map[string]Head{
			"job_a": {JobID: "job_a", Seq: 4, Hash: a[3].Hash},
			"job_b": {JobID: "job_b", Seq: 2, Hash: b[1].Hash}, // job_b grew after sealing
		}
		return heads, map[string][]Event{"job_a": a, "job_b": b}
	}
	cases := []struct {
		name   string
		tamper func(t *testing.T, evs map[string][]Event)
		want   []found
		chain  []found // what VerifyChain alone finds in job_a
	}{
		{"intact", func(t *testing.T, evs map[string][]Event) {}, nil, nil},
		{"truncate a chain", func(t *testing.T, evs map[string][]Event) {
			evs["job_a"] = without(evs["job_a"], 4)
		}, []found{{Deleted, 4, ""}}, nil},
		{"delete a whole chain", func(t *testing.T, evs map[string][]Event) {
			delete(evs, "job_a")
		}, []found{{Deleted, 4, ""}}, nil},
		{"rewrite the chain from seq 2 with recomputed hashes", func(t *testing.T, evs map[string][]Event) {
			a := evs["job_a"]
			for i := 1; i < len(a); i++ {
				a[i].Reason = "rewritten"
				a[i].PrevHash = a[i-1].Hash
				rehash(t, &a[i])
			}
		}, []found{{Modified, 4, "job_a-ev04"}}, nil},
		{"move the sealed head", func(t *testing.T, evs map[string][]Event) {
			evs["job_a"][3].Seq = 9
		}, []found{{Reordered, 9, "job_a-ev04"}}, []found{{Reordered, 9, "job_a-ev04"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			heads, evs := sealed(t)
			c.tamper(t, evs)
			got := VerifyAgainstCheckpoint(heads, evs)
			if !slices.Equal(summarize(got), c.want) {
				t.Fatalf("checkpoint problems:\n%s\nwant %v", dump(got), c.want)
			}
			if chain := VerifyChain(evs["job_a"]); !slices.Equal(summarize(chain), c.chain) {
				t.Fatalf("chain problems:\n%s\nwant %v", dump(chain), c.chain)
			}
		})
	}
}

func TestLatestHeads(t *testing.T) {
	t.Parallel()
	cps := []Checkpoint{
		{Heads: []Head{{"a", 2, "h-a2"}, {"b", 1, "h-b1"}}},
		{Heads: []Head{{"a", 5, "h-a5"}}},
		{Heads: []Head{{"c", 1, "h-c1"}}},
	}
	got := LatestHeads(cps)
	want := map[string]Head{"a": {"a", 5, "h-a5"}, "b": {"b", 1, "h-b1"}, "c": {"c", 1, "h-c1"}}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for k, h := range want {
		if got[k] != h {
			t.Errorf("%s: got %v, want %v", k, got[k], h)
		}
	}
}
