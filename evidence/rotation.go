package evidence

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
)

// Rotation hands the checkpoint chain from one signing key to the next. It rides on
// the first checkpoint the new key signs: the old key endorses the new one, bound to
// the position (the previous checkpoint's hash), so a verifier that pinned either key
// out of band can follow to the other. Trust never comes from the database: a row
// writer without the old key cannot forge an endorsement.
type Rotation struct {
	From        ed25519.PublicKey // signed the checkpoints before this one
	To          ed25519.PublicKey // signs this checkpoint and the ones after it
	Endorsement []byte            // Ed25519 by From over RotationMessage(prevHash, To)
}

// RotationMessage is what the old key signs to endorse to after the checkpoint whose
// hash is prevHash.
func RotationMessage(prevHash string, to ed25519.PublicKey) []byte {
	return fmt.Appendf(nil, "agate checkpoint key rotation v1\n%s\n%x", prevHash, []byte(to))
}

// NewRotation returns the checkpoint that hands the chain from the key from to the key
// to: it seals heads after prev, carries from's endorsement of to, and is signed by to.
func NewRotation(id string, at int64, heads []Head, prev *Checkpoint, from, to ed25519.PrivateKey) (Checkpoint, error) {
	if len(from) != ed25519.PrivateKeySize || len(to) != ed25519.PrivateKeySize {
		return Checkpoint{}, errors.New("evidence: rotation keys must be Ed25519 private keys")
	}
	fromPub, _ := from.Public().(ed25519.PublicKey)
	toPub, _ := to.Public().(ed25519.PublicKey)
	if fromPub.Equal(toPub) {
		return Checkpoint{}, errors.New("evidence: a rotation needs two different keys")
	}
	prevHash := ""
	if prev != nil {
		prevHash = prev.Hash
	}
	r := &Rotation{From: fromPub, To: toPub, Endorsement: ed25519.Sign(from, RotationMessage(prevHash, toPub))}
	return newCheckpoint(id, at, heads, prev, to, r)
}

// verify checks a rotation carried by c: two Ed25519 keys, the new one c's signer,
// and the old one's endorsement. A nil rotation is fine.
func (r *Rotation) verify(c *Checkpoint) error {
	if r == nil {
		return nil
	}
	if len(r.From) != ed25519.PublicKeySize || len(r.To) != ed25519.PublicKeySize {
		return invalid("checkpoint %s: rotation keys are not Ed25519 public keys", c.ID)
	}
	if KeyID(r.To) != c.KeyID {
		return invalid("checkpoint %s: rotation names key %s, but %s signed it", c.ID, KeyID(r.To), c.KeyID)
	}
	if !ed25519.Verify(r.From, RotationMessage(c.PrevHash, r.To), r.Endorsement) {
		return fmt.Errorf("%w: checkpoint %s: the rotation's endorsement by %s does not verify", ErrBadSignature, c.ID, KeyID(r.From))
	}
	return nil
}

// SigningKeys returns, for each of cps (in seq order; a window of the chain will do),
// the trusted key that must have signed it, or nil when no trusted key may have.
//
// Trusted are the pinned keys and every key a valid rotation connects to one: an
// endorsement by a trusted key vouches for the new key, and the new key's signature
// over the rotation vouches for the old one's earlier checkpoints. Each checkpoint
// belongs to the key of the rotation in force at its position, so a key rotated away
// from (perhaps because it leaked) signs nothing after its rotation. Without any
// rotation, a checkpoint may be signed by any pinned key.
func SigningKeys(pinned []ed25519.PublicKey, cps []Checkpoint) []ed25519.PublicKey {
	type rot struct {
		at       int
		from, to ed25519.PublicKey
	}
	var rots []rot
	for i := range cps {
		r := cps[i].Rotation
		if r == nil || cps[i].Rotation.verify(&cps[i]) != nil || !signedBy(&cps[i], r.To) {
			continue
		}
		// The old key must be the one in force: the previous checkpoint's signer, or
		// the previous rotation's new key.
		if i > 0 && cps[i-1].KeyID != KeyID(r.From) {
			continue
		}
		if n := len(rots); n > 0 && !rots[n-1].to.Equal(r.From) {
			continue
		}
		rots = append(rots, rot{i, r.From, r.To})
	}
	trusted := map[string]ed25519.PublicKey{}
	for _, k := range pinned {
		trusted[KeyID(k)] = k
	}
	// Keys along the rotation chain form one line: trust spreads along it both ways.
	for changed := true; changed; {
		changed = false
		for _, r := range rots {
			_, f := trusted[KeyID(r.from)]
			_, t := trusted[KeyID(r.to)]
			if f != t {
				trusted[KeyID(r.from)], trusted[KeyID(r.to)] = r.from, r.to
				changed = true
			}
		}
	}
	out := make([]ed25519.PublicKey, len(cps))
	next := 0 // index into rots of the first rotation at or after i
	for i := range cps {
		for next < len(rots) && rots[next].at <= i {
			next++
		}
		var epoch ed25519.PublicKey
		switch {
		case next > 0:
			epoch = rots[next-1].to
		case len(rots) > 0:
			epoch = rots[0].from
		default:
			epoch = trusted[cps[i].KeyID] // no rotation: any pinned key
		}
		if k, ok := trusted[KeyID(epoch)]; ok && epoch != nil && k.Equal(epoch) {
			out[i] = epoch
		}
	}
	return out
}

func signedBy(c *Checkpoint, pub ed25519.PublicKey) bool {
	h, err := c.computeHash()
	return err == nil && h == c.Hash && KeyID(pub) == c.KeyID && ed25519.Verify(pub, []byte(c.Hash), c.Signature)
}

// equalRotation reports whether two rotations are the same record.
func equalRotation(a, b *Rotation) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.From.Equal(b.From) && a.To.Equal(b.To) && bytes.Equal(a.Endorsement, b.Endorsement)
}
