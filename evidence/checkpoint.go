package evidence

import (
	"cmp"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/agate-pdp/agate/canonical"
)

// Head is the last event of one chain as a checkpoint sealed it.
type Head struct {
	JobID string
	Seq   int64
	Hash  string
}

// Checkpoint is a signed seal over the heads of the chains that grew since the
// previous checkpoint. Checkpoints chain through PrevHash, so none can be dropped or
// rewritten without breaking the next one, and the signature means that whoever can
// write rows but lacks the key file cannot forge one.
type Checkpoint struct {
	ID        string
	At        int64     // µs since epoch
	Heads     []Head    // sorted by JobID, one per chain
	Root      string    // lower-case hex MerkleRoot(Heads)
	PrevHash  string    // Hash of the previous checkpoint; "" for the first
	Hash      string    // "sha256:" + hex(SHA-256(JCS({"at","id","prev_hash","root"})))
	KeyID     string    // KeyID of the signing key
	Signature []byte    // Ed25519 over the bytes of Hash
	Rotation  *Rotation // set on the first checkpoint a new key signs; Hash covers it
}

// ErrCheckpointInvalid matches every error about a checkpoint's content or link.
var ErrCheckpointInvalid = errors.New("evidence: invalid checkpoint")

// ErrBadSignature matches a checkpoint that the pinned key did not sign.
var ErrBadSignature = errors.New("evidence: checkpoint signature does not verify")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCheckpointInvalid, fmt.Sprintf(format, args...))
}

// NewCheckpoint seals heads (in any order; one per chain) after prev (nil for the
// first checkpoint) and signs the result with key.
func NewCheckpoint(id string, at int64, heads []Head, prev *Checkpoint, key ed25519.PrivateKey) (Checkpoint, error) {
	return newCheckpoint(id, at, heads, prev, key, nil)
}

func newCheckpoint(id string, at int64, heads []Head, prev *Checkpoint, key ed25519.PrivateKey, r *Rotation) (Checkpoint, error) {
	if len(key) != ed25519.PrivateKeySize {
		return Checkpoint{}, errors.New("evidence: checkpoint signing key is not an Ed25519 private key")
	}
	c := Checkpoint{ID: id, At: at, Heads: slices.Clone(heads), Rotation: r}
	slices.SortFunc(c.Heads, func(a, b Head) int { return cmp.Compare(a.JobID, b.JobID) })
	if err := c.checkFields(); err != nil {
		return Checkpoint{}, err
	}
	if prev != nil {
		c.PrevHash = prev.Hash
	}
	var err error
	if c.Root, err = MerkleRoot(c.Heads); err != nil {
		return Checkpoint{}, invalid("%v", err)
	}
	if c.Hash, err = c.computeHash(); err != nil {
		return Checkpoint{}, invalid("%v", err)
	}
	pub, _ := key.Public().(ed25519.PublicKey)
	c.KeyID = KeyID(pub)
	c.Signature = ed25519.Sign(key, []byte(c.Hash))
	return c, nil
}

// checkFields checks what NewCheckpoint and Verify both require: an id, a time, and
// complete heads strictly ordered by job id.
func (c *Checkpoint) checkFields() error {
	if c.ID == "" || c.At <= 0 {
		return invalid("id and at are required")
	}
	for i, h := range c.Heads {
		if h.JobID == "" || h.Seq < 1 || h.Hash == "" {
			return invalid("head %d is incomplete", i)
		}
		if i > 0 && c.Heads[i-1].JobID >= h.JobID {
			return invalid("heads are not sorted by job id or repeat %q", h.JobID)
		}
	}
	return nil
}

func (c *Checkpoint) computeHash() (string, error) {
	m := map[string]any{"id": c.ID, "at": c.At, "root": c.Root, "prev_hash": c.PrevHash}
	if r := c.Rotation; r != nil {
		// Only checkpoints that carry a rotation hash it, so every earlier one keeps
		// its hash.
		m["rotation"] = map[string]any{"from_key": hex.EncodeToString(r.From),
			"to_key": hex.EncodeToString(r.To), "endorsement": hex.EncodeToString(r.Endorsement)}
	}
	b, err := canonical.Append(nil, m)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// Verify checks c against the pinned public key and its predecessor: the Merkle root
// over the heads, the link to prev (nil means c must be the first checkpoint), the
// hash, and the signature. Content errors match ErrCheckpointInvalid, a wrong key or
// signature ErrBadSignature.
func (c Checkpoint) Verify(pub ed25519.PublicKey, prev *Checkpoint) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: not an Ed25519 public key", ErrBadSignature)
	}
	if err := c.checkFields(); err != nil {
		return err
	}
	root, err := MerkleRoot(c.Heads)
	if err != nil {
		return invalid("%v", err)
	}
	if root != c.Root {
		return invalid("checkpoint %s: merkle root does not match its heads", c.ID)
	}
	switch {
	case prev == nil && c.PrevHash != "":
		return invalid("checkpoint %s links to a previous checkpoint, but none was given", c.ID)
	case prev != nil && c.PrevHash != prev.Hash:
		return invalid("checkpoint %s does not link to checkpoint %s", c.ID, prev.ID)
	}
	h, err := c.computeHash()
	if err != nil {
		return invalid("%v", err)
	}
	if h != c.Hash {
		return invalid("checkpoint %s: hash does not match its content", c.ID)
	}
	if err := c.Rotation.verify(&c); err != nil {
		return err
	}
	if want := KeyID(pub); c.KeyID != want {
		return fmt.Errorf("%w: checkpoint %s names key %s, the pinned key is %s", ErrBadSignature, c.ID, c.KeyID, want)
	}
	if !ed25519.Verify(pub, []byte(c.Hash), c.Signature) {
		return fmt.Errorf("%w: checkpoint %s", ErrBadSignature, c.ID)
	}
	return nil
}

// VerifyCheckpoints verifies a whole checkpoint chain, which must start with the first
// checkpoint, in order.
func VerifyCheckpoints(pub ed25519.PublicKey, cps []Checkpoint) error {
	var prev *Checkpoint
	for i := range cps {
		if err := cps[i].Verify(pub, prev); err != nil {
			return err
		}
		prev = &cps[i]
	}
	return nil
}
