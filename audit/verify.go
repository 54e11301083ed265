package audit

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// BadSignature is the ProblemKind of a checkpoint that no trusted key signed.
const BadSignature evidence.ProblemKind = "bad_signature"

// Problem is one integrity problem: about an event (see evidence.Problem) or, with
// CheckpointID set or JobID empty, about a checkpoint (Seq is then the checkpoint's).
// SpanFrom..SpanTo (inclusive) is the narrowest stretch of the chain that can hold
// the change: after the last sealed head that still matches, up to the first that
// does not; equal when the exact event is known, 0 when it does not apply.
type Problem struct {
	evidence.Problem
	CheckpointID     string
	SpanFrom, SpanTo int64
}

// Report is the result of a verification.
type Report struct {
	Problems            []Problem // by chain and seq; checkpoints' (no chain) first
	EventsVerified      int64
	ChainsVerified      int64
	CheckpointsVerified int64
	WitnessedVerified   int64 // witness records checked against the checkpoints
}

// OK reports whether nothing was found.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// Trust is what a verification trusts and compares against, beyond the evidence it
// verifies.
type Trust struct {
	// Keys are the pinned public keys (at least one). Keys that a valid rotation
	// connects to a pinned key are trusted too; see evidence.SigningKeys.
	Keys []ed25519.PublicKey
	// Witnessed are the records of witness files (see ReadWitness). Each checkpoint a
	// trusted key signed must be among the checkpoints verified, unless a valid one
	// took its position; its heads are checked like those of any checkpoint, unless a
	// trusted key signed an abort record of it and a valid checkpoint took its
	// position. An abort record no trusted key signed is reported.
	Witnessed []WitnessedCheckpoint
	// Originals are events from a copy kept elsewhere (an earlier export). Where a
	// chain fails and the copy's chain verifies, the first event that differs is named.
	Originals []evidence.Event
	// MaxClockSkew is the bound the replicas kept their clocks within; it widens the
	// sealing window (see SealWindow). 0 means DefaultMaxClockSkew.
	MaxClockSkew time.Duration
}

// Verify checks the evidence in the store: every checkpoint's content, link and
// signature under the service's keys, and every chain with an event in w (every
// chain when w is open) against its hashes and links and against every head a valid
// checkpoint sealed. With an open window, a chain a checkpoint sealed that has no
// events left is reported deleted.
//
// The checkpoints are read first: every head they seal was committed before the chains
// are read, so a chain that grows meanwhile is never mistaken for a truncated one.
func (s *Service) Verify(ctx context.Context, w Window) (Report, error) {
	return s.VerifyWith(ctx, w, Trust{Keys: s.trusted, MaxClockSkew: s.maxSkew})
}

// VerifyWith is Verify with the trust given instead of the service's.
func (s *Service) VerifyWith(ctx context.Context, w Window, trust Trust) (Report, error) {
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
	v := newVerifier(trust, cps, storeSpan)
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

// Export is an ExportEvidence stream as read back.
type Export struct {
	Manifest    *Manifest // nil in exports made before the manifest existed (format 1)
	Events      []evidence.Event
	Checkpoints []store.Checkpoint
}

// VerifyExport checks an export offline, as Verify checks the store: its checkpoints
// (in any order) under trust, and each exported chain. It also proves the export
// complete against its manifest, which a trusted key must have signed (see
// checkManifest): the file holds exactly the checkpoints the manifest names, and
// every chain a checkpoint in the file seals, up to the sealed head. Witness records
// are checked over the manifest's range of checkpoints, whether the file holds them or
// not.
//
// With legacy set, exports made before manifests were signed verify: one without a
// manifest (format 1, which held every checkpoint from the first but only the window's
// chains) is not checked for absent chains, and an unsigned manifest (format 2) is
// taken as it is. Neither proves the file complete.
func VerifyExport(trust Trust, exp Export, legacy bool) Report {
	cps := slices.Clone(exp.Checkpoints)
	slices.SortFunc(cps, func(a, b store.Checkpoint) int { return cmp.Compare(a.Seq, b.Seq) })
	span := fileSpan(exp.Manifest, cps)
	v := newVerifier(trust, cps, span)
	if exp.Manifest == nil && !legacy {
		v.out.Problems = append(v.out.Problems, Problem{Problem: evidence.Problem{Kind: evidence.Deleted,
			Detail: "the export has no manifest, so nothing shows that it holds its newest checkpoints; " +
				"an export made before exports carried one verifies only with --legacy"}})
	}
	if exp.Manifest != nil {
		v.checkManifest(trust, exp.Manifest, cps, legacy)
	}
	var order []string
	chains := map[string][]evidence.Event{}
	for _, e := range exp.Events {
		if _, ok := chains[e.JobID]; !ok {
			order = append(order, e.JobID)
		}
		chains[e.JobID] = append(chains[e.JobID], e)
	}
	for _, job := range order {
		v.chain(job, chains[job])
	}
	if !(legacy && exp.Manifest == nil) {
		v.vanishedChains()
	}
	return v.report()
}

// span is the checkpoints a verification expects, First to Last (Last 0: none;
// LastOpen: every one from First on, as in the store), and whether a witness record
// beyond them may be checked.
type span struct {
	First, Last int64
	LastOpen    bool
}

// storeSpan is what the store must hold: every checkpoint from the first.
var storeSpan = span{First: 1, LastOpen: true}

// fileSpan is what an export must hold: the manifest's range; without a manifest
// (format 1), its own checkpoints, from the first.
func fileSpan(m *Manifest, cps []store.Checkpoint) span {
	switch {
	case m != nil && m.FirstCheckpoint > 0:
		return span{First: m.FirstCheckpoint, Last: max(m.LastCheckpoint, 0)}
	case m != nil:
		return span{First: 1} // none
	case len(cps) == 0:
		return span{First: 1}
	default:
		return span{First: 1, Last: cps[len(cps)-1].Seq}
	}
}

func (s span) holds(seq int64) bool { return seq >= s.First && (s.LastOpen || seq <= s.Last) }

// checkManifest checks an export's manifest: its signature, by the key in force at the
// file's last checkpoint or by a pinned key (unsigned only with legacy); its fields;
// that an open window starts at the first checkpoint; and that the file's last
// checkpoint is the one it names. newVerifier checked that the file holds exactly
// its range.
func (v *verifier) checkManifest(trust Trust, m *Manifest, cps []store.Checkpoint, legacy bool) {
	bad := func(kind evidence.ProblemKind, format string, args ...any) {
		v.out.Problems = append(v.out.Problems, Problem{Problem: evidence.Problem{Kind: kind,
			Detail: "the export's manifest " + fmt.Sprintf(format, args...)}})
	}
	switch {
	case len(m.Signature) == 0 && !legacy:
		bad(BadSignature, "is not signed, so it may have been edited to match a file that lost checkpoints; "+
			"an export made before manifests were signed verifies only with --legacy")
	case len(m.Signature) > 0 && !v.manifestSigned(trust, m, cps):
		bad(BadSignature, "(format %d, checkpoints %d to %d) is not signed by a trusted key: it was edited, or signed by another key",
			m.Format, m.FirstCheckpoint, m.LastCheckpoint)
	}
	switch {
	case m.FirstCheckpoint < 0 || m.LastCheckpoint < 0 || m.LastCheckpoint < m.FirstCheckpoint ||
		(m.FirstCheckpoint == 0) != (m.LastCheckpoint == 0):
		bad(evidence.Modified, "names checkpoints %d to %d, which is no range", m.FirstCheckpoint, m.LastCheckpoint)
	case m.Since == 0 && m.Until == 0 && m.FirstCheckpoint > 1:
		bad(evidence.Deleted, "says the window is open, which starts at checkpoint 1, but it starts at checkpoint %d", m.FirstCheckpoint)
	}
	if m.LastHash == "" || m.LastCheckpoint == 0 {
		if len(m.Signature) > 0 && m.LastCheckpoint > 0 {
			bad(evidence.Modified, "names no hash for its last checkpoint")
		}
		return
	}
	if i, ok := slices.BinarySearchFunc(cps, m.LastCheckpoint, func(c store.Checkpoint, seq int64) int {
		return cmp.Compare(c.Seq, seq)
	}); ok && cps[i].Hash != m.LastHash {
		bad(evidence.Modified, "names checkpoint %d with hash %s, but the file's has %s", m.LastCheckpoint, m.LastHash, cps[i].Hash)
	}
}

// manifestSigned reports whether a trusted key signed m: the key in force at the
// file's last checkpoint (a pinned key, or one a valid rotation connects to one), or a
// pinned key.
func (v *verifier) manifestSigned(trust Trust, m *Manifest, cps []store.Checkpoint) bool {
	keys := slices.Clone(trust.Keys)
	if len(cps) > 0 {
		plain := make([]evidence.Checkpoint, len(cps))
		for i := range cps {
			plain[i] = cps[i].Checkpoint
		}
		if k := evidence.SigningKeys(trust.Keys, plain)[len(cps)-1]; k != nil {
			keys = append(keys, k)
		}
	}
	return slices.ContainsFunc(keys, m.signedBy)
}

// verifier accumulates a verification.
type verifier struct {
	sealed    map[string][]evidence.Head // every head a valid checkpoint sealed, by chain, seq ascending
	upTo      map[string]int64           // highest head sealed, by chain
	latestAt  int64                      // At of the latest valid checkpoint
	lookback  int64                      // µs
	originals map[string][]evidence.Event
	seen      map[string]bool
	out       Report
}

// newVerifier checks cps (in seq order), which must be exactly the checkpoints of sp,
// and the witness records of sp, and returns a verifier ready for the chains.
func newVerifier(trust Trust, cps []store.Checkpoint, sp span) *verifier {
	v := &verifier{sealed: map[string][]evidence.Head{}, upTo: map[string]int64{}, seen: map[string]bool{},
		lookback: micros(SealWindow(trust.MaxClockSkew)), originals: map[string][]evidence.Event{}}
	plain := make([]evidence.Checkpoint, len(cps))
	for i := range cps {
		plain[i] = cps[i].Checkpoint
	}
	keys := evidence.SigningKeys(trust.Keys, plain)
	bySeq := make(map[int64]*store.Checkpoint, len(cps))
	valid := make(map[int64]bool, len(cps))
	for i, c := range cps {
		bySeq[c.Seq] = &cps[i]
		v.out.CheckpointsVerified++
		ok := v.checkpoint(keys[i], c)
		v.link(cps, i, sp)
		if ok {
			valid[c.Seq] = true
			v.seal(c.Checkpoint)
		}
	}
	if !sp.LastOpen {
		from := sp.First
		if len(cps) > 0 {
			from = max(from, cps[len(cps)-1].Seq+1)
		}
		v.missing(from, sp.Last)
	}
	v.witnessed(trust, cps, keys, bySeq, valid, sp)
	for _, e := range trust.Originals {
		v.originals[e.JobID] = append(v.originals[e.JobID], e)
	}
	for job, heads := range v.sealed {
		slices.SortFunc(heads, func(a, b evidence.Head) int { return cmp.Compare(a.Seq, b.Seq) })
		v.sealed[job] = slices.CompactFunc(heads, func(a, b evidence.Head) bool { return a == b })
	}
	return v
}

// seal records the heads of a valid checkpoint, verified or witnessed.
func (v *verifier) seal(c evidence.Checkpoint) {
	v.latestAt = max(v.latestAt, c.At)
	for _, h := range c.Heads {
		v.sealed[h.JobID] = append(v.sealed[h.JobID], h)
		v.upTo[h.JobID] = max(v.upTo[h.JobID], h.Seq)
	}
}

// checkpoint checks c's own content and signature under key (nil: no trusted key may
// sign it), not its link, and reports whether its heads can be trusted.
func (v *verifier) checkpoint(key ed25519.PublicKey, c store.Checkpoint) bool {
	var prev *evidence.Checkpoint
	if c.PrevHash != "" {
		prev = &evidence.Checkpoint{Hash: c.PrevHash} // the link is checked on its own
	}
	var err error
	if key == nil {
		err = fmt.Errorf("%w: checkpoint %s is signed by %s, which neither a pinned key nor a rotation it endorsed vouches for",
			evidence.ErrBadSignature, c.ID, c.KeyID)
	} else {
		err = c.Verify(key, prev)
	}
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
// prev_hash names its predecessor's hash. The first must be sp's first (with no
// predecessor when that is checkpoint 1); a windowed export does not hold the
// predecessor of its first checkpoint. A checkpoint outside sp was added.
func (v *verifier) link(cps []store.Checkpoint, i int, sp span) {
	c := cps[i]
	if !sp.holds(c.Seq) {
		v.checkpointProblem(c, evidence.Inserted, fmt.Sprintf("checkpoint %d is outside the export's manifest, which names checkpoints %d to %d",
			c.Seq, sp.First, sp.Last))
		return
	}
	from := sp.First
	if i > 0 {
		from = max(from, cps[i-1].Seq+1)
	}
	v.missing(from, c.Seq-1)
	switch {
	case c.Seq != from:
		// Reported above (or a duplicate seq, which the store cannot hold).
	case from == 1 && c.PrevHash != "":
		v.checkpointProblem(c, evidence.Modified, "the first checkpoint links to a previous one")
	case i > 0 && cps[i-1].Seq == c.Seq-1 && c.PrevHash != cps[i-1].Hash:
		v.checkpointProblem(c, evidence.Modified, fmt.Sprintf("does not link to checkpoint %d", cps[i-1].Seq))
	}
}

// missing reports checkpoints from to to (inclusive) missing.
func (v *verifier) missing(from, to int64) {
	for seq := from; seq <= to; seq++ {
		v.out.Problems = append(v.out.Problems, Problem{Problem: evidence.Problem{Seq: seq, Kind: evidence.Deleted,
			Detail: fmt.Sprintf("checkpoint %d is missing", seq)}})
	}
}

func (v *verifier) checkpointProblem(c store.Checkpoint, kind evidence.ProblemKind, detail string) {
	v.out.Problems = append(v.out.Problems, Problem{CheckpointID: c.ID,
		Problem: evidence.Problem{Seq: c.Seq, Kind: kind, Detail: detail}})
}

// chain verifies one whole chain: its hashes and links, every head a checkpoint
// sealed, and that every event older than the latest checkpoint's sealing window is
// sealed. The Sealer seals every chain that grew within that window, so an old event
// beyond the sealed head was written by someone other than Agate.
func (v *verifier) chain(job string, events []evidence.Event) {
	v.seen[job] = true
	v.out.ChainsVerified++
	v.out.EventsVerified += int64(len(events))
	var found []Problem
	reported := map[string]bool{}
	for _, p := range evidence.VerifyChain(events) {
		found = append(found, Problem{Problem: p})
		reported[p.EventID] = true
	}
	heads := v.sealed[job]
	if p, bad := v.firstBadHead(job, heads, events); bad && (p.EventID == "" || !reported[p.EventID]) {
		found = append(found, p)
		reported[p.EventID] = true
	}
	if len(found) > 0 {
		v.pinpoint(job, found, events)
	}
	var head int64
	if len(heads) > 0 {
		head = heads[len(heads)-1].Seq
	}
	if cutoff := v.latestAt - v.lookback; v.latestAt > 0 {
		for _, e := range events {
			if e.Seq > head && e.At < cutoff && !reported[e.EventID] {
				found = append(found, Problem{Problem: evidence.Problem{JobID: job, Seq: e.Seq, EventID: e.EventID, Kind: evidence.Inserted,
					Detail: "no checkpoint seals it, though it is older than the latest checkpoint's sealing window"}})
			}
		}
	}
	v.out.Problems = append(v.out.Problems, found...)
}

// firstBadHead checks the sealed heads of a chain in seq order and reports the first
// that the chain no longer holds, with the span between it and the last one it still
// holds: a consistent rewrite can hide in no other stretch of the chain.
func (v *verifier) firstBadHead(job string, heads []evidence.Head, events []evidence.Event) (Problem, bool) {
	good := int64(0)
	for _, h := range heads {
		p, bad := evidence.VerifyAgainstCheckpoint(map[string]evidence.Head{job: h}, map[string][]evidence.Event{job: events}), false
		if len(p) > 0 {
			bad = true
		}
		if !bad {
			good = h.Seq
			continue
		}
		out := Problem{Problem: p[0], SpanFrom: good + 1, SpanTo: h.Seq}
		out.Detail += fmt.Sprintf("; the change lies in seq %d to %d (sealed heads %s)", good+1, h.Seq, spanNote(good, h.Seq))
		return out, true
	}
	return Problem{}, false
}

func spanNote(good, bad int64) string {
	if good == 0 {
		return fmt.Sprintf("none matches up to seq %d", bad)
	}
	return fmt.Sprintf("%d matches, %d does not", good, bad)
}

// pinpoint names the exact event where a copy kept elsewhere holds the chain as it
// was: the copy must itself agree with every sealed head, then its first event that
// differs from the chain (or that the chain lacks) is where the change is.
func (v *verifier) pinpoint(job string, found []Problem, events []evidence.Event) {
	orig := v.originals[job]
	if len(orig) == 0 || evidence.VerifyChain(orig) != nil {
		return
	}
	if _, bad := v.firstBadHead(job, v.sealed[job], orig); bad {
		return
	}
	cur := map[int64]evidence.Event{}
	for _, e := range events {
		if _, dup := cur[e.Seq]; !dup {
			cur[e.Seq] = e
		}
	}
	for _, o := range orig { // in chain order: VerifyChain passed
		c, ok := cur[o.Seq]
		if ok && c.Hash == o.Hash && c.EventID == o.EventID {
			if h, err := c.ComputeHash(); err == nil && h == c.Hash {
				continue
			}
		}
		what := "is missing"
		if ok {
			what = fmt.Sprintf("differs (event %s)", c.EventID)
		}
		for i := range found {
			found[i].SpanFrom, found[i].SpanTo = o.Seq, o.Seq
		}
		found[0].Detail += fmt.Sprintf("; the original copy pins it: seq %d (event %s) %s", o.Seq, o.EventID, what)
		return
	}
}

// vanishedChains reports every chain a valid checkpoint (verified or witnessed) sealed
// that has no events at all.
func (v *verifier) vanishedChains() {
	for job, seq := range v.upTo {
		if !v.seen[job] {
			v.out.Problems = append(v.out.Problems, Problem{Problem: evidence.Problem{JobID: job, Seq: seq,
				Kind: evidence.Deleted, Detail: fmt.Sprintf("a checkpoint sealed this chain up to seq %d; none of its events is here", seq)},
				SpanFrom: 1, SpanTo: seq})
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
	return s.eachChainOf(ctx, ids, fn)
}

// eachChainOf calls fn with each chain named (every chain when ids is nil).
func (s *Service) eachChainOf(ctx context.Context, ids []string, fn func(job string, events []evidence.Event) error) error {
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
