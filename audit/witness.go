package audit

import (
	"bufio"
	"cmp"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
//	{"aborted": {"seq": N, "hash": H, "key_id": K, "signature": S}}
//	                                  that checkpoint did not commit after all
//
// A checkpoint is witnessed before its transaction commits, so none can commit
// unwitnessed; a transaction that then fails is marked aborted, the record signed by
// the evidence key (AbortMessage), so that whoever can append to the file cannot
// excuse a checkpoint dropped from the database. Verification gives an abort weight
// only once another valid checkpoint holds its position: until then the aborted
// checkpoint is reported like a dropped one, as is a checkpoint whose process died
// between the two.

// witnessRecord is one line of a witness file.
type witnessRecord struct {
	Checkpoint *witnessCheckpoint `json:"checkpoint,omitempty"`
	Aborted    *witnessAbort      `json:"aborted,omitempty"`
}

type witnessAbort struct {
	Seq       int64  `json:"seq"`
	Hash      string `json:"hash"`
	KeyID     string `json:"key_id,omitempty"`
	Signature []byte `json:"signature,omitempty"` // Ed25519 over AbortMessage(Seq, Hash)
}

// AbortMessage is what the evidence key signs to record that the checkpoint at seq
// with hash did not commit.
func AbortMessage(seq int64, hash string) []byte {
	return fmt.Appendf(nil, "agate witness abort v1\n%d\n%q", seq, hash)
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

// Abort records that c, appended before, did not commit, signed with key (the
// evidence key that signed c).
func (w *Witness) Abort(c store.Checkpoint, key ed25519.PrivateKey) error {
	if len(key) != ed25519.PrivateKeySize {
		return errors.New("audit: witness: an abort record must be signed with an Ed25519 private key")
	}
	pub, _ := key.Public().(ed25519.PublicKey)
	return w.write(witnessRecord{Aborted: &witnessAbort{Seq: c.Seq, Hash: c.Hash, KeyID: evidence.KeyID(pub),
		Signature: ed25519.Sign(key, AbortMessage(c.Seq, c.Hash))}})
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

// WitnessedCheckpoint is one record of a witness file: a checkpoint, or, with Abort
// set, a record that the checkpoint at Seq with Hash did not commit (the other fields
// are then empty).
type WitnessedCheckpoint struct {
	store.Checkpoint
	Source string        // "file:line"
	Abort  *WitnessAbort // set on an abort record
}

// WitnessAbort is the signature of an abort record.
type WitnessAbort struct {
	KeyID     string
	Signature []byte // Ed25519 over AbortMessage(Seq, Hash)
}

// maxWitnessLine bounds one line: a checkpoint's heads are ~150 bytes each.
const maxWitnessLine = 256 << 20

// ReadWitness reads a witness file: its checkpoint and abort records, in file order.
// name labels the records' Source. A torn last line (a crash mid-write of a checkpoint
// that therefore never committed) is ignored. Whether an abort record counts is for
// verification to decide: see Trust.Witnessed.
func ReadWitness(r io.Reader, name string) ([]WitnessedCheckpoint, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxWitnessLine)
	var out []WitnessedCheckpoint
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
		source := fmt.Sprintf("%s:%d", name, n)
		switch a := rec.Aborted; {
		case rec.Checkpoint != nil && a == nil:
			out = append(out, WitnessedCheckpoint{Checkpoint: rec.Checkpoint.checkpoint(), Source: source})
		case a != nil && rec.Checkpoint == nil:
			out = append(out, WitnessedCheckpoint{Checkpoint: store.Checkpoint{Seq: a.Seq, Checkpoint: evidence.Checkpoint{Hash: a.Hash}},
				Source: source, Abort: &WitnessAbort{KeyID: a.KeyID, Signature: a.Signature}})
		default:
			pendingErr = fmt.Errorf("%s:%d: neither a checkpoint nor an abort", name, n)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
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

// witnessed checks the witness records of sp against the verified checkpoints (cps,
// in seq order, signed by keys; valid: the seqs of those that verified) and adds the
// heads of every witnessed checkpoint a trusted key signed: one whose position holds
// nothing was dropped, and the chains it sealed must still match its heads. An abort
// record excuses its checkpoint (its heads do not count) only when the key in force at
// its position, or a pinned key, signed it and another valid checkpoint holds that
// position; one no trusted key signed is reported, as the witness was altered.
func (v *verifier) witnessed(trust Trust, cps []store.Checkpoint, keys []ed25519.PublicKey, bySeq map[int64]*store.Checkpoint,
	valid map[int64]bool, sp span) {
	if len(trust.Witnessed) == 0 {
		return
	}
	// The key each position must be signed with, over the verified checkpoints and the
	// witnessed ones at positions the verified set lacks, in seq order.
	merged := slices.Clone(cps)
	extra := map[int64]bool{}
	for _, w := range trust.Witnessed {
		if _, ok := bySeq[w.Seq]; !ok && !extra[w.Seq] && w.Abort == nil {
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
	type position struct {
		seq  int64
		hash string
	}
	aborted := map[position]bool{}
	for _, w := range trust.Witnessed {
		if w.Abort == nil || !sp.holds(w.Seq) {
			continue
		}
		v.out.WitnessedVerified++
		if !abortSigned(w, append([]ed25519.PublicKey{keyAt[w.Seq]}, trust.Keys...)) {
			v.out.Problems = append(v.out.Problems, Problem{Problem: evidence.Problem{Seq: w.Seq, Kind: BadSignature,
				Detail: fmt.Sprintf("abort record %s (of checkpoint %d, hash %s) is not signed by a trusted key: the witness file was altered, "+
					"or was written before abort records were signed", w.Source, w.Seq, w.Hash)}})
			continue
		}
		aborted[position{w.Seq, w.Hash}] = true
	}
	reported := map[int64]bool{}
	for _, w := range trust.Witnessed {
		if w.Abort != nil || !sp.holds(w.Seq) {
			continue
		}
		v.out.WitnessedVerified++
		c, held := bySeq[w.Seq]
		if held && c.Hash == w.Hash {
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
		if aborted[position{w.Seq, w.Hash}] && valid[w.Seq] {
			continue // it did not commit, and another checkpoint took its position
		}
		v.seal(w.Checkpoint.Checkpoint)
		if held || reported[w.Seq] {
			// Another checkpoint holds the position: this one never committed (its
			// replica died before the commit); its heads still count.
			continue
		}
		reported[w.Seq] = true
		v.out.Problems = append(v.out.Problems, Problem{CheckpointID: w.ID, Problem: evidence.Problem{Seq: w.Seq, Kind: evidence.Deleted,
			Detail: fmt.Sprintf("checkpoint %d is in witness %s but missing here: checkpoints were dropped, or this is a backup older than the witness (see the README)", w.Seq, w.Source)}})
	}
}

// abortSigned reports whether one of keys (nil ones skipped) signed the abort record w.
func abortSigned(w WitnessedCheckpoint, keys []ed25519.PublicKey) bool {
	msg := AbortMessage(w.Seq, w.Hash)
	return slices.ContainsFunc(keys, func(k ed25519.PublicKey) bool {
		return len(k) == ed25519.PublicKeySize && evidence.KeyID(k) == w.Abort.KeyID && ed25519.Verify(k, msg, w.Abort.Signature)
	})
}

// errWitness wraps a failure to write the witness: sealing stops rather than write a
// checkpoint the witness lacks.
var errWitness = errors.New("audit: witness not written: not sealing")
