package evidence

import (
	"cmp"
	"fmt"
	"slices"
)

// ProblemKind classifies a tampering problem found by verification.
type ProblemKind string

// The problem kinds.
const (
	// Modified: an event's content no longer matches its hash, or a checkpoint sealed a
	// different hash at that position.
	Modified ProblemKind = "modified"
	// Deleted: a position the chain or a checkpoint accounts for holds no event.
	Deleted ProblemKind = "deleted"
	// Inserted: an event with a valid hash that the chain's links do not account for.
	Inserted ProblemKind = "inserted"
	// Reordered: an intact event whose seq disagrees with where the links place it.
	Reordered ProblemKind = "reordered"
)

// Problem is one detected integrity problem. Seq is the event's seq as stored, or for
// Deleted the missing position; EventID is empty for Deleted.
type Problem struct {
	JobID   string
	Seq     int64
	EventID string
	Kind    ProblemKind
	Detail  string
}

// maxListedGap bounds the Deleted problems listed one per seq for one gap; a larger gap
// (e.g. a forged event with a huge seq) is reported as one range.
const maxListedGap = 1000

// VerifyChain checks one chain as read from storage: every event's hash is recomputed,
// every prev_hash must name the hash of the event one seq before, and seqs must run
// from 1 without gaps. It returns nil for an intact chain, else the problems ordered by
// seq, at most one per event:
//
//   - Modified: an event whose content (any field, the hash column included) no longer
//     matches its hash.
//   - Reordered: an event whose content matches its hash only under another seq, which
//     its links confirm (its seq was changed); or an intact event whose prev_hash links
//     it after a different position than its seq says.
//   - Deleted: a missing seq (a gap, or a chain that does not start at 1).
//   - Inserted: an intact event that duplicates a seq, forks the chain (links to an
//     event that already has a successor), claims to start it at a later seq, or whose
//     prev_hash names no event in the chain. The last case is also what rewriting the
//     preceding event and recomputing its hash looks like; the Detail says so.
//
// The chain alone cannot catch an attacker who recomputes every hash from some point
// on, or appends a well-linked event at the end: there is no secret in a hash.
// VerifyAgainstCheckpoint catches rewrites and truncation of everything a signed
// checkpoint sealed.
func VerifyChain(events []Event) []Problem {
	if len(events) == 0 {
		return nil
	}
	c := newChainCheck(events)
	c.recoverPositions()
	c.reportContent()
	c.scanPositions()
	slices.SortStableFunc(c.out, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Seq, b.Seq), cmp.Compare(a.EventID, b.EventID))
	})
	return c.out
}

// chainCheck holds one chain under verification. Index i refers to ev[i], the events
// sorted by stored seq.
type chainCheck struct {
	job      string
	ev       []*Event
	computed []string         // recomputed hash; "" when it cannot be computed
	intact   []bool           // stored hash == recomputed hash
	known    []bool           // position established: intact, or recovered
	pos      []int64          // sealed position: the stored seq unless recovered
	moved    []bool           // content intact under a recovered seq
	flagged  []bool           // a problem is already reported for the event
	byHash   map[string]int   // stored hash -> first event with it
	kids     map[string][]int // prev_hash -> events naming it
	out      []Problem
}

func newChainCheck(events []Event) *chainCheck {
	n := len(events)
	c := &chainCheck{
		ev: make([]*Event, n), computed: make([]string, n), intact: make([]bool, n),
		known: make([]bool, n), pos: make([]int64, n), moved: make([]bool, n),
		flagged: make([]bool, n), byHash: make(map[string]int, n), kids: make(map[string][]int, n),
	}
	for i := range events {
		c.ev[i] = &events[i]
	}
	slices.SortStableFunc(c.ev, func(a, b *Event) int { return cmp.Compare(a.Seq, b.Seq) })
	c.job = c.ev[0].JobID
	for i, e := range c.ev {
		if h, err := e.ComputeHash(); err == nil {
			c.computed[i] = h
			c.intact[i] = h == e.Hash
		}
		c.known[i] = c.intact[i]
		c.pos[i] = e.Seq
		if _, dup := c.byHash[e.Hash]; !dup && e.Hash != "" {
			c.byHash[e.Hash] = i
		}
		c.kids[e.PrevHash] = append(c.kids[e.PrevHash], i)
	}
	return c
}

// recoverPositions finds events whose only change is their seq: starting from intact
// events, a neighbour by link (successor or predecessor) whose hash verifies under the
// seq its link implies has been moved, not modified.
func (c *chainCheck) recoverPositions() {
	var queue []int
	for i := range c.ev {
		switch {
		case c.known[i]:
			queue = append(queue, i)
		case c.ev[i].PrevHash == "" && c.tryPosition(i, 1):
			queue = append(queue, i)
		}
	}
	for len(queue) > 0 {
		k := queue[0]
		queue = queue[1:]
		e := c.ev[k]
		for _, j := range c.kids[e.Hash] {
			if j != k && c.tryPosition(j, c.pos[k]+1) {
				queue = append(queue, j)
			}
		}
		if j, ok := c.byHash[e.PrevHash]; ok && e.PrevHash != "" && j != k && c.tryPosition(j, c.pos[k]-1) {
			queue = append(queue, j)
		}
	}
}

// tryPosition reports whether unknown event i verifies under seq p, and if so records
// p as its position.
func (c *chainCheck) tryPosition(i int, p int64) bool {
	if c.known[i] || p < 1 || p == c.ev[i].Seq {
		return false
	}
	moved := *c.ev[i]
	moved.Seq = p
	h, err := moved.ComputeHash()
	if err != nil || h != c.ev[i].Hash {
		return false
	}
	c.known[i], c.moved[i], c.pos[i] = true, true, p
	return true
}

// reportContent reports every event whose content does not verify as stored.
func (c *chainCheck) reportContent() {
	for i, e := range c.ev {
		switch {
		case c.moved[i]:
			c.flag(i, Reordered, fmt.Sprintf("stored at seq %d, but its hash and links place it at seq %d", e.Seq, c.pos[i]))
		case c.computed[i] == "":
			c.flag(i, Modified, "content cannot be hashed")
		case !c.intact[i]:
			c.flag(i, Modified, "content does not match its hash")
		}
	}
}

func (c *chainCheck) flag(i int, kind ProblemKind, detail string) {
	c.flagged[i] = true
	c.out = append(c.out, Problem{JobID: c.job, Seq: c.ev[i].Seq, EventID: c.ev[i].EventID, Kind: kind, Detail: detail})
}

// scanPositions walks the positions in order: gaps are deletions, extra events at one
// position are insertions, and each position's event must link to the one before.
func (c *chainCheck) scanPositions() {
	order := make([]int, len(c.ev))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(c.pos[a], c.pos[b]) })
	last, prev := int64(0), -1 // last position seen and its chosen event (-1 after a gap)
	for start := 0; start < len(order); {
		p := c.pos[order[start]]
		end := start + 1
		for end < len(order) && c.pos[order[end]] == p {
			end++
		}
		group := order[start:end]
		start = end
		if p < 1 {
			for _, i := range group {
				c.flagIfIntact(i, Inserted, fmt.Sprintf("seq %d is before the chain's start", p))
			}
			continue
		}
		if p > last+1 {
			c.deleted(last+1, p-1)
			prev = -1
		}
		chosen := c.choose(group, p, prev)
		for _, i := range group {
			if i != chosen {
				c.flagIfIntact(i, Inserted, fmt.Sprintf("duplicates seq %d", p))
			}
		}
		c.checkLink(chosen, p, prev)
		last, prev = p, chosen
	}
}

func (c *chainCheck) flagIfIntact(i int, kind ProblemKind, detail string) {
	if !c.flagged[i] {
		c.flag(i, kind, detail)
	}
}

func (c *chainCheck) deleted(from, to int64) {
	if to-from+1 > maxListedGap {
		c.out = append(c.out, Problem{JobID: c.job, Seq: from, Kind: Deleted,
			Detail: fmt.Sprintf("seq %d to %d missing", from, to)})
		return
	}
	for s := from; s <= to; s++ {
		c.out = append(c.out, Problem{JobID: c.job, Seq: s, Kind: Deleted, Detail: fmt.Sprintf("seq %d missing", s)})
	}
}

// choose picks the genuine event among those at position p: the one the next
// position links to, else one that links to the previous position, else an unflagged
// one, else the first.
func (c *chainCheck) choose(group []int, p int64, prev int) int {
	if len(group) == 1 {
		return group[0]
	}
	for _, i := range group {
		for _, k := range c.kids[c.ev[i].Hash] {
			if k != i && c.pos[k] == p+1 {
				return i
			}
		}
	}
	for _, i := range group {
		if !c.flagged[i] && c.linksTo(i, p, prev) {
			return i
		}
	}
	for _, i := range group {
		if !c.flagged[i] {
			return i
		}
	}
	return group[0]
}

// linksTo reports whether event i's prev_hash names the event before it: none at
// position 1, else prev (whose recomputed hash also counts when its stored hash was
// altered, so one altered hash column is reported once, as Modified).
func (c *chainCheck) linksTo(i int, p int64, prev int) bool {
	ph := c.ev[i].PrevHash
	if p == 1 {
		return ph == ""
	}
	if prev < 0 {
		return false
	}
	return ph == c.ev[prev].Hash || (!c.intact[prev] && ph != "" && ph == c.computed[prev])
}

// checkLink classifies a broken link of the event chosen for position p.
func (c *chainCheck) checkLink(i int, p int64, prev int) {
	if c.flagged[i] || (p > 1 && prev < 0) || c.linksTo(i, p, prev) {
		return // already reported, explained by a gap, or fine
	}
	ph := c.ev[i].PrevHash
	if ph == "" {
		c.flag(i, Inserted, fmt.Sprintf("claims to start the chain at seq %d", p))
		return
	}
	j, ok := c.byHash[ph]
	if !ok || j == i {
		c.flag(i, Inserted, fmt.Sprintf("prev_hash names no event in the chain: a forged event, or seq %d was rewritten with a recomputed hash", p-1))
		return
	}
	for _, k := range c.kids[ph] {
		if k != i && !c.flagged[k] {
			c.flag(i, Inserted, fmt.Sprintf("forks the chain: links to seq %d, which already has a successor", c.pos[j]))
			return
		}
	}
	c.flag(i, Reordered, fmt.Sprintf("at seq %d, but prev_hash links it after seq %d", p, c.pos[j]))
}
