package evidence

import (
	"cmp"
	"slices"
	"testing"
)

// FuzzVerifyChain tampers with a sealed chain as the fuzz input directs and checks
// VerifyChain against a plain definition of an intact chain: it must report nothing
// exactly when the result is still intact, and never panic.
func FuzzVerifyChain(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 2})          // drop
	f.Add([]byte{1, 1, 4})       // swap seqs
	f.Add([]byte{2, 3})          // edit
	f.Add([]byte{3, 3, 2})       // forge
	f.Add([]byte{4, 2, 9})       // set seq
	f.Add([]byte{5, 2, 2, 2})    // edit, rehash
	f.Add([]byte{6, 4})          // copy a row
	f.Add([]byte{3, 7, 5, 1, 5}) // forge, then rehash it
	f.Fuzz(func(t *testing.T, ops []byte) {
		evs := sealedChain(t, "job_f", 5)
		next := func() int {
			if len(ops) == 0 {
				return 0
			}
			b := int(ops[0])
			ops = ops[1:]
			return b
		}
		pick := func() int { return next() % max(len(evs), 1) }
		for len(ops) > 0 && len(evs) > 0 {
			switch next() % 7 {
			case 0:
				i := pick()
				evs = slices.Delete(evs, i, i+1)
			case 1:
				i, j := pick(), pick()
				evs[i].Seq, evs[j].Seq = evs[j].Seq, evs[i].Seq
			case 2:
				evs[pick()].Reason += "!"
			case 3:
				seq := int64(next()%9) - 1
				prev := evs[pick()].Hash
				e := forge(t, "job_f", seq, prev)
				evs = append(evs, e)
			case 4:
				evs[pick()].Seq = int64(next()%12) - 1
			case 5:
				rehash(t, &evs[pick()])
			case 6:
				evs = append(evs, evs[pick()])
			}
		}
		got := VerifyChain(evs)
		if intact := intactChain(evs); intact != (len(got) == 0) {
			t.Fatalf("intact=%v but problems:\n%s", intact, dump(got))
		}
		ids := map[string]bool{}
		for _, e := range evs {
			ids[e.EventID] = true
		}
		perEvent := map[string]int{}
		for _, p := range got {
			switch p.Kind {
			case Modified, Deleted, Inserted, Reordered:
			default:
				t.Fatalf("unknown kind %q", p.Kind)
			}
			if (p.Kind == Deleted) != (p.EventID == "") || (p.EventID != "" && !ids[p.EventID]) {
				t.Fatalf("bad event id in %+v", p)
			}
			perEvent[p.EventID]++
			if p.EventID != "" && perEvent[p.EventID] > 1 && !hasDuplicateRow(evs, p.EventID) {
				t.Fatalf("event %s reported twice:\n%s", p.EventID, dump(got))
			}
		}
	})
}

// intactChain is the definition VerifyChain must agree with: seqs 1..n once each,
// every hash valid, every prev_hash the hash of the event before.
func intactChain(evs []Event) bool {
	s := slices.Clone(evs)
	slices.SortFunc(s, func(a, b Event) int { return cmp.Compare(a.Seq, b.Seq) })
	prev := ""
	for i, e := range s {
		h, err := e.ComputeHash()
		if err != nil || h != e.Hash || e.Seq != int64(i+1) || e.PrevHash != prev {
			return false
		}
		prev = e.Hash
	}
	return true
}

// hasDuplicateRow reports whether id names more than one row (a copied row is
// reported once per copy).
func hasDuplicateRow(evs []Event, id string) bool {
	n := 0
	for _, e := range evs {
		if e.EventID == id {
			n++
		}
	}
	return n > 1
}
