package audit

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// BadSignature is the ProblemKind of a checkpoint that the pinned key did not sign.
const BadSignature evidence.ProblemKind = "bad_signature"

// Problem is one integrity problem: about an event (see evidence.Problem) or, with
// CheckpointID set, about a checkpoint (Seq is then the checkpoint's).
type Problem struct {
	evidence.Problem
	CheckpointID string
}

// Report is the result of a verification.
type Report struct {
	Problems            []Problem // by chain and seq; checkpoints' (no chain) first
	EventsVerified      int64
	ChainsVerified      int64
	CheckpointsVerified int64
}

// OK reports whether nothing was found.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// Verify checks the evidence in the store: every checkpoint's content, link and
// signature under the service's public key, and every chain with an event in w (every
// chain when w is open) against its hashes and links and against the latest head a
// valid checkpoint sealed. With an open window, a chain a checkpoint sealed that has
// no events left is reported deleted.
//
// The checkpoints are read first: every head they seal was committed before the chains
// are read, so a chain that grows meanwhile is never mistaken for a truncated one.
func (s *Service) Verify(ctx context.Context, w Window) (Report, error) {
	if err := w.check(); err != nil {
		return Report{}, err
	}
	var cps []store.Checkpoint
	err := s.read(ctx, func(ctx context.Context, tx store.Tx) error {
		var err error
		cps, err = tx.ListCheckpoints(ctx, 0, 0)
		return err
	})
	if err != nil {
		return Report{}, err
	}
	v := newVerifier(s.pub, cps)
	err = s.eachChain(ctx, w, func(job string, events []evidence.Event) error {
		v.chain(job, events)
		return nil
	})
	if err != nil {
		return Report{}, err
	}
	if w.open() {
		v.vanishedChains()
	}
	return v.report(), nil
}

// VerifyExport checks an export offline, as Verify checks the store: the checkpoints
// (in any order) under pub, and each exported chain. Chains the export does not
// contain are not checked.
func VerifyExport(pub ed25519.PublicKey, events []evidence.Event, cps []store.Checkpoint) Report {
	cps = slices.Clone(cps)
	slices.SortFunc(cps, func(a, b store.Checkpoint) int { return cmp.Compare(a.Seq, b.Seq) })
	v := newVerifier(pub, cps)
	var order []string
	chains := map[string][]evidence.Event{}
	for _, e := range events {
		if _, ok := chains[e.JobID]; !ok {
			order = append(order, e.JobID)
		}
		chains[e.JobID] = append(chains[e.JobID], e)
	}
	for _, job := range order {
		v.chain(job, chains[job])
	}
	return v.report()
}

// verifier accumulates a verification.
type verifier struct {
	heads    map[string]evidence.Head // latest head sealed by a valid checkpoint, by chain
	latestAt int64                    // At of the latest valid checkpoint
	seen     map[string]bool
	out      Report
}

func newVerifier(pub ed25519.PublicKey, cps []store.Checkpoint) *verifier {
	v := &verifier{seen: map[string]bool{}}
	var valid []evidence.Checkpoint
	for i, c := range cps {
		v.out.CheckpointsVerified++
		ok := v.checkpoint(pub, c)
		v.link(cps, i)
		if ok {
			valid = append(valid, c.Checkpoint)
			v.latestAt = max(v.latestAt, c.At)
		}
	}
	v.heads = evidence.LatestHeads(valid)
	return v
}

// checkpoint checks c's own content and signature, not its link, and reports whether
// its heads can be trusted.
func (v *verifier) checkpoint(pub ed25519.PublicKey, c store.Checkpoint) bool {
	var prev *evidence.Checkpoint
	if c.PrevHash != "" {
		prev = &evidence.Checkpoint{Hash: c.PrevHash} // the link is checked on its own
	}
	err := c.Verify(pub, prev)
	if err == nil {
		return true
	}
	kind := evidence.Modified
	if errors.Is(err, evidence.ErrBadSignature) {
		kind = BadSignature
	}
	v.checkpointProblem(c, kind, err.Error())
	return false
}

// link checks that checkpoint i follows the one before it: no seq is missing and its
// prev_hash names its predecessor's hash.
func (v *verifier) link(cps []store.Checkpoint, i int) {
	c := cps[i]
	from := int64(1)
	if i > 0 {
		from = cps[i-1].Seq + 1
	}
	for seq := from; seq < c.Seq; seq++ {
		v.out.Problems = append(v.out.Problems, Problem{Problem: evidence.Problem{Seq: seq, Kind: evidence.Deleted,
			Detail: fmt.Sprintf("checkpoint %d is missing", seq)}})
	}
	switch {
	case c.Seq != from:
		// Reported above (or a duplicate seq, which the store cannot hold).
	case i == 0 && c.PrevHash != "":
		v.checkpointProblem(c, evidence.Modified, "the first checkpoint links to a previous one")
	case i > 0 && c.PrevHash != cps[i-1].Hash:
		v.checkpointProblem(c, evidence.Modified, fmt.Sprintf("does not link to checkpoint %d", cps[i-1].Seq))
	}
}

func (v *verifier) checkpointProblem(c store.Checkpoint, kind evidence.ProblemKind, detail string) {
	v.out.Problems = append(v.out.Problems, Problem{CheckpointID: c.ID,
		Problem: evidence.Problem{Seq: c.Seq, Kind: kind, Detail: detail}})
}

// chain verifies one whole chain: its hashes and links, its latest sealed head, and
// that every event older than the latest checkpoint's sealing window is sealed. The
// Sealer seals every chain that grew within that window, so an old event beyond the
// sealed head was written by someone other than Agate.
func (v *verifier) chain(job string, events []evidence.Event) {
	v.seen[job] = true
	v.out.ChainsVerified++
	v.out.EventsVerified += int64(len(events))
	found := evidence.VerifyChain(events)
	reported := map[string]bool{}
	for _, p := range found {
		reported[p.EventID] = true
	}
	head, sealed := v.heads[job]
	if sealed {
		for _, p := range evidence.VerifyAgainstCheckpoint(map[string]evidence.Head{job: head},
			map[string][]evidence.Event{job: events}) {
			if p.EventID == "" || !reported[p.EventID] {
				found = append(found, p)
				reported[p.EventID] = true
			}
		}
	}
	if cutoff := v.latestAt - micros(SealLookback); v.latestAt > 0 {
		for _, e := range events {
			if e.Seq > head.Seq && e.At < cutoff && !reported[e.EventID] {
				found = append(found, evidence.Problem{JobID: job, Seq: e.Seq, EventID: e.EventID, Kind: evidence.Inserted,
					Detail: "no checkpoint seals it, though it is older than the latest checkpoint's sealing window"})
			}
		}
	}
	for _, p := range found {
		v.out.Problems = append(v.out.Problems, Problem{Problem: p})
	}
}

// vanishedChains reports every sealed chain that has no events at all.
func (v *verifier) vanishedChains() {
	for job, head := range v.heads {
		if !v.seen[job] {
			v.out.Problems = append(v.out.Problems, Problem{Problem: evidence.Problem{JobID: job, Seq: head.Seq,
				Kind: evidence.Deleted, Detail: fmt.Sprintf("a checkpoint sealed this chain up to seq %d; none of its events remain", head.Seq)}})
		}
	}
}

func (v *verifier) report() Report {
	slices.SortStableFunc(v.out.Problems, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.JobID, b.JobID), cmp.Compare(a.Seq, b.Seq), cmp.Compare(a.EventID, b.EventID))
	})
	return v.out
}

// eachChain calls fn with every whole chain that has an event in w (every chain when
// w is open), a page of events at a time from the store.
func (s *Service) eachChain(ctx context.Context, w Window, fn func(job string, events []evidence.Event) error) error {
	var ids []string
	if !w.open() {
		err := s.read(ctx, func(ctx context.Context, tx store.Tx) error {
			var err error
			ids, err = chainsIn(ctx, tx, w)
			return err
		})
		if err != nil || len(ids) == 0 {
			return err
		}
	}
	chunks := [][]string{nil} // nil: every chain
	if ids != nil {
		chunks = slices.Collect(slices.Chunk(ids, 200))
	}
	for _, chunk := range chunks {
		if err := s.chainPages(ctx, chunk, fn); err != nil {
			return err
		}
	}
	return nil
}

// chainPages reads the chains named (all when ids is nil) in (job, seq) order and hands
// each whole chain to fn. Each page is its own read transaction; a chain is only
// appended to, so reading it across pages stays consistent.
func (s *Service) chainPages(ctx context.Context, ids []string, fn func(string, []evidence.Event) error) error {
	q := store.ChainQuery{JobIDs: ids, Limit: pageLimit}
	var job string
	var chain []evidence.Event
	for {
		var page []evidence.Event
		err := s.read(ctx, func(ctx context.Context, tx store.Tx) error {
			var err error
			page, err = tx.ListChainEvents(ctx, q)
			return err
		})
		if err != nil {
			return err
		}
		for _, e := range page {
			if e.JobID != job && chain != nil {
				if err := fn(job, chain); err != nil {
					return err
				}
				chain = nil
			}
			job = e.JobID
			chain = append(chain, e)
		}
		if len(page) < q.Limit {
			break
		}
		last := page[len(page)-1]
		q.AfterJobID, q.AfterSeq = last.JobID, last.Seq
	}
	if chain != nil {
		return fn(job, chain)
	}
	return nil
}
