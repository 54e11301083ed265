package evidence

import (
	"crypto/ed25519"
	"errors"
	"testing"
)

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func TestRotation(t *testing.T) {
	t.Parallel()
	k1, k2, k3 := seededKey(1), seededKey(2), seededKey(3)
	heads := []Head{{JobID: "a", Seq: 1, Hash: "sha256:aa"}}
	var cps []Checkpoint
	add := func(c Checkpoint, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		cps = append(cps, c)
	}
	prev := func() *Checkpoint {
		if len(cps) == 0 {
			return nil
		}
		return &cps[len(cps)-1]
	}
	add(NewCheckpoint("cp1", 1, heads, prev(), k1))
	add(NewCheckpoint("cp2", 2, heads, prev(), k1))
	add(NewRotation("cp3", 3, nil, prev(), k1, k2))
	add(NewCheckpoint("cp4", 4, heads, prev(), k2))
	// A checkpoint signed by the key rotated away from, after the rotation.
	add(NewCheckpoint("cp5", 5, heads, prev(), k1))

	want := []ed25519.PublicKey{pubOf(k1), pubOf(k1), pubOf(k2), pubOf(k2), pubOf(k2)}
	for name, pinned := range map[string][]ed25519.PublicKey{"old key": {pubOf(k1)}, "new key": {pubOf(k2)}, "both": {pubOf(k1), pubOf(k2)}} {
		got := SigningKeys(pinned, cps)
		for i := range cps {
			if !got[i].Equal(want[i]) {
				t.Errorf("pinned %s: checkpoint %d key %s, want %s", name, i+1, KeyID(got[i]), KeyID(want[i]))
			}
		}
		var p *Checkpoint
		for i := range cps {
			err := cps[i].Verify(got[i], p)
			if i < 4 && err != nil {
				t.Errorf("pinned %s: checkpoint %d: %v", name, i+1, err)
			}
			if i == 4 && !errors.Is(err, ErrBadSignature) {
				t.Errorf("pinned %s: checkpoint signed by the retired key: %v, want a bad signature", name, err)
			}
			p = &cps[i]
		}
	}
	for i, k := range SigningKeys([]ed25519.PublicKey{pubOf(k3)}, cps) {
		if k != nil {
			t.Errorf("an unrelated pinned key trusts checkpoint %d", i+1)
		}
	}

	// An endorsement by a key that is not the one in force counts for nothing.
	forged, err := NewRotation("cp3", 3, nil, &cps[1], k3, k2)
	if err != nil {
		t.Fatal(err)
	}
	chain := []Checkpoint{cps[0], cps[1], forged, cps[3]}
	got := SigningKeys([]ed25519.PublicKey{pubOf(k1)}, chain)
	if got[2] != nil || got[3] != nil {
		t.Errorf("a rotation endorsed by an unrelated key was followed: %v", got)
	}
	// A rotation's record is covered by its hash.
	tampered := cps[2]
	r := *tampered.Rotation
	r.To = pubOf(k3)
	tampered.Rotation = &r
	if err := tampered.Verify(pubOf(k2), &cps[1]); err == nil {
		t.Error("a rotation naming another key verified")
	}
	if _, err := NewRotation("x", 1, nil, nil, k1, k1); err == nil {
		t.Error("a rotation to the same key was made")
	}
}
