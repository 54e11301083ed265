package audit

import (
	"bufio"
	"cmp"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// A witness is an append-only JSON-lines file outside the database, one per replica
// (or shared by the replicas of one host), holding a copy of every checkpoint the
// replica writes. Whoever can rewrite rows cannot rewrite it, so it shows checkpoints
// dropped from the database, and through their signed heads, the chains only they
// sealed. Each line is one record:
//
//	{"checkpoint": {...}}             written and fsynced before the checkpoint commits
//	{"aborted": {"seq": N, "hash": H}} that checkpoint did not commit after all
//
// A checkpoint is witnessed before its transaction commits, so none can commit
// unwitnessed; a transaction that then fails is marked aborted. Only a process that
// dies between the two leaves a witnessed checkpoint that never committed, and a
// valid checkpoint at the same position later shows that.

// witnessRecord is one line of a witness file.
type witnessRecord struct {
	Checkpoint *witnessCheckpoint `json:"checkpoint,omitempty"`
	Aborted    *witnessAbort      `json:"aborted,omitempty"`
}

type witnessAbort struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

type witnessCheckpoint struct {
	Seq       int64           `json:"seq"`
	ID        string          `json:"checkpoint_id"`
	At        int64           `json:"at"`
	Root      string          `json:"merkle_root"`
	PrevHash  string          `json:"previous_hash"`
	Hash      string          `json:"hash"`
	KeyID     string          `json:"key_id"`
	Signature []byte          `json:"signature"`
	Heads     []witnessHead   `json:"heads"`
	Rotation  *witnessRotated `json:"rotation,omitempty"`
}

type witnessHead struct {
	JobID string `json:"job_id"`
	Seq   int64  `json:"seq"`
	Hash  string `json:"hash"`
}

type witnessRotated struct {
	From        []byte `json:"from_public_key"`
	To          []byte `json:"to_public_key"`
	Endorsement []byte `json:"endorsement"`
}

func toWitness(c store.Checkpoint) *witnessCheckpoint {
	w := &witnessCheckpoint{Seq: c.Seq, ID: c.ID, At: c.At, Root: c.Root, PrevHash: c.PrevHash, Hash: c.Hash,
		KeyID: c.KeyID, Signature: c.Signature, Heads: make([]witnessHead, len(c.Heads))}
	for i, h := range c.Heads {
		w.Heads[i] = witnessHead(h)
	}
	if r := c.Rotation; r != nil {
		w.Rotation = &witnessRotated{From: r.From, To: r.To, Endorsement: r.Endorsement}
	}
	return w
}

func (w *witnessCheckpoint) checkpoint() store.Checkpoint {
	c := store.Checkpoint{Seq: w.Seq, Checkpoint: evidence.Checkpoint{ID: w.ID, At: w.At, Root: w.Root,
		PrevHash: w.PrevHash, Hash: w.Hash, KeyID: w.KeyID, Signature: w.Signature}}
	for _, h := range w.Heads {
		c.Heads = append(c.Heads, evidence.Head(h))
	}
	if r := w.Rotation; r != nil {
		c.Rotation = &evidence.Rotation{From: r.From, To: r.To, Endorsement: r.Endorsement}
	}
	return c
}

// Witness appends checkpoints to a witness file. It is safe for concurrent use.
type Witness struct {
	mu   sync.Mutex
	f    *os.File
	path string
}

// OpenWitness opens (creating it, mode 0600, and its directory, 0700) the witness file
// at path for appending.
func OpenWitness(path string) (*Witness, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit: witness directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: witness: %w", err)
	}
	return &Witness{f: f, path: path}, nil
}

// Path is the witness file's path.
func (w *Witness) Path() string { return w.path }

// Close closes the file.
func (w *Witness) Close() error { return w.f.Close() }

// Append writes c as one line and syncs it to disk before returning.
func (w *Witness) Append(c store.Checkpoint) error {
	return w.write(witnessRecord{Checkpoint: toWitness(c)})
}

// Abort records that c, appended before, did not commit.
func (w *Witness) Abort(c store.Checkpoint) error {
	return w.write(witnessRecord{Aborted: &witnessAbort{Seq: c.Seq, Hash: c.Hash}})
}

func (w *Witness) write(r witnessRecord) error {
	line, err := json.Marshal(r)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	// One write per line: with O_APPEND, replicas sharing the file never interleave.
	if _, err := w.f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("audit: witness %s: %w", w.path, err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("audit: witness %s: %w", w.path, err)
	}
	return nil
}

// WitnessedCheckpoint is a checkpoint as a witness file holds it.
type WitnessedCheckpoint struct {
	store.Checkpoint
	Source string // "file:line"
}

// maxWitnessLine bounds one line: a checkpoint's heads are ~150 bytes each.
const maxWitnessLine = 256 << 20

// ReadWitness reads a witness file: the checkpoints it holds, less those it marks
// aborted. name labels the records' Source. A torn last line (a crash mid-write of a
// checkpoint that therefore never committed) is ignored.
func ReadWitness(r io.Reader, name string) ([]WitnessedCheckpoint, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxWitnessLine)
	var out []WitnessedCheckpoint
	aborted := map[witnessAbort]bool{}
	var pendingErr error
	for n := 1; sc.Scan(); n++ {
		if pendingErr != nil {
			return nil, pendingErr // a bad line that is not the last one
		}
		if len(sc.Bytes()) == 0 {
			continue
		}
		var rec witnessRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			pendingErr = fmt.Errorf("%s:%d: %w", name, n, err)
			continue
		}
		switch {
		case rec.Checkpoint != nil:
			out = append(out, WitnessedCheckpoint{Checkpoint: rec.Checkpoint.checkpoint(), Source: fmt.Sprintf("%s:%d", name, n)})
		case rec.Aborted != nil:
			aborted[*rec.Aborted] = true
		default:
			pendingErr = fmt.Errorf("%s:%d: neither a checkpoint nor an abort", name, n)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return slices.DeleteFunc(out, func(w WitnessedCheckpoint) bool {
		return aborted[witnessAbort{Seq: w.Seq, Hash: w.Hash}]
	}), nil
}

// ReadWitnessFile reads the witness file at path.
func ReadWitnessFile(path string) ([]WitnessedCheckpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadWitness(f, path)
}

// witnessed checks the witnessed checkpoints against the verified ones (cps, signed by
// keys) and adds the heads of every one a trusted key signed: a witnessed checkpoint
// whose position holds nothing was dropped (within [lo, hi], the positions the
// verified set can hold), and the chains it sealed must still match its heads.
func (v *verifier) witnessed(trust Trust, cps []store.Checkpoint, keys []ed25519.PublicKey, bySeq map[int64]*store.Checkpoint, lo, hi int64) {
	if len(trust.Witnessed) == 0 {
		return
	}
	// The key each position must be signed with, over the verified checkpoints and the
	// witnessed ones at positions the verified set lacks, in seq order.
	merged := slices.Clone(cps)
	extra := map[int64]bool{}
	for _, w := range trust.Witnessed {
		if _, ok := bySeq[w.Seq]; !ok && !extra[w.Seq] {
			extra[w.Seq] = true
			merged = append(merged, w.Checkpoint)
		}
	}
	slices.SortFunc(merged, func(a, b store.Checkpoint) int { return cmp.Compare(a.Seq, b.Seq) })
	plain := make([]evidence.Checkpoint, len(merged))
	for i := range merged {
		plain[i] = merged[i].Checkpoint
	}
	keyAt := map[int64]ed25519.PublicKey{}
	for i, k := range evidence.SigningKeys(trust.Keys, plain) {
		keyAt[merged[i].Seq] = k
	}
	for i, c := range cps {
		keyAt[c.Seq] = keys[i]
	}
	reported := map[int64]bool{}
	for _, w := range trust.Witnessed {
		if w.Seq < lo || w.Seq > hi {
			continue
		}
		v.out.WitnessedVerified++
		if c, ok := bySeq[w.Seq]; ok && c.Hash == w.Hash {
			continue // the same checkpoint: verified already
		}
		key := keyAt[w.Seq]
		var prev *evidence.Checkpoint
		if w.PrevHash != "" {
			prev = &evidence.Checkpoint{Hash: w.PrevHash}
		}
		if key == nil || w.Verify(key, prev) != nil {
			v.out.Problems = append(v.out.Problems, Problem{CheckpointID: w.ID, Problem: evidence.Problem{Seq: w.Seq, Kind: BadSignature,
				Detail: fmt.Sprintf("witness record %s does not verify under the trusted keys: the witness file was altered", w.Source)}})
			continue
		}
		v.seal(w.Checkpoint.Checkpoint)
		if _, ok := bySeq[w.Seq]; ok || reported[w.Seq] {
			// Another valid checkpoint holds the position: this one never committed
			// (its replica died before the commit); its heads still count.
			continue
		}
		reported[w.Seq] = true
		v.out.Problems = append(v.out.Problems, Problem{CheckpointID: w.ID, Problem: evidence.Problem{Seq: w.Seq, Kind: evidence.Deleted,
			Detail: fmt.Sprintf("checkpoint %d is in witness %s but missing here: checkpoints were dropped, or this is a backup older than the witness (see the README)", w.Seq, w.Source)}})
	}
}

// witnessRange is the positions a witness record may be checked at: every one for
// the store, which must hold them all; an export's own range for a file, which cannot
// hold checkpoints written after it.
func witnessRange(cps []store.Checkpoint, export bool) (lo, hi int64) {
	if !export {
		return 1, math.MaxInt64
	}
	if len(cps) == 0 {
		return 1, 0
	}
	return cps[0].Seq, cps[len(cps)-1].Seq
}

// errWitness wraps a failure to write the witness: sealing stops rather than write a
// checkpoint the witness lacks.
var errWitness = errors.New("audit: witness not written: not sealing")
