package evidence

import (
	"fmt"
	"maps"
	"slices"
)

// VerifyAgainstCheckpoint checks chains against the heads checkpoints sealed (keyed by
// job id; see LatestHeads). The head event must still be at its seq with its hash; with
// VerifyChain passing, that proves every earlier event unchanged too. A head that is
// gone is Deleted (truncation), one with another hash Modified, and one found at
// another seq Reordered. Problems are ordered by job id.
func VerifyAgainstCheckpoint(heads map[string]Head, events map[string][]Event) []Problem {
	var out []Problem
	for _, job := range slices.Sorted(maps.Keys(heads)) {
		if p, bad := checkHead(job, heads[job], events[job]); bad {
			out = append(out, p)
		}
	}
	return out
}

func checkHead(job string, h Head, events []Event) (Problem, bool) {
	var atSeq, withHash *Event
	later := false
	for i := range events {
		e := &events[i]
		if e.Seq == h.Seq && e.Hash == h.Hash {
			return Problem{}, false
		}
		later = later || e.Seq > h.Seq
		if e.Seq == h.Seq && atSeq == nil {
			atSeq = e
		}
		if e.Hash == h.Hash && withHash == nil {
			withHash = e
		}
	}
	switch {
	case withHash != nil:
		return Problem{JobID: job, Seq: withHash.Seq, EventID: withHash.EventID, Kind: Reordered,
			Detail: fmt.Sprintf("a checkpoint sealed this event at seq %d", h.Seq)}, true
	case atSeq != nil:
		return Problem{JobID: job, Seq: h.Seq, EventID: atSeq.EventID, Kind: Modified,
			Detail: "hash differs from the one a checkpoint sealed"}, true
	case later:
		// A gap, not a truncation: the chain's own check reports the missing seq once.
		return Problem{}, false
	default:
		return Problem{JobID: job, Seq: h.Seq, Kind: Deleted,
			Detail: fmt.Sprintf("a checkpoint sealed seq %d, which is missing: the chain was truncated", h.Seq)}, true
	}
}

// LatestHeads returns, per chain, the head with the highest seq among cps. Checking a
// chain against its latest sealed head covers every earlier one.
func LatestHeads(cps []Checkpoint) map[string]Head {
	out := map[string]Head{}
	for _, cp := range cps {
		for _, h := range cp.Heads {
			if cur, ok := out[h.JobID]; !ok || h.Seq > cur.Seq {
				out[h.JobID] = h
			}
		}
	}
	return out
}
