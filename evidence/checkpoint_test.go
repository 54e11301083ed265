package evidence

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
)

// seededKey returns a fixed Ed25519 key so test failures reproduce.
func seededKey(b byte) ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = b
	return ed25519.NewKeyFromSeed(seed)
}

// TestMerkleRoot recomputes RFC 6962 roots from hand-written canonical leaves, without
// going through the package's canonical encoding.
func TestMerkleRoot(t *testing.T) {
	t.Parallel()
	leaf := func(canon string) []byte {
		s := sha256.Sum256(append([]byte{0}, canon...))
		return s[:]
	}
	node := func(l, r []byte) []byte {
		s := sha256.Sum256(append(append([]byte{1}, l...), r...))
		return s[:]
	}
	l0 := leaf(`{"hash":"sha256:aa","job_id":"job_a","seq":1}`)
	l1 := leaf(`{"hash":"sha256:bb","job_id":"job_b","seq":12}`)
	l2 := leaf(`{"hash":"sha256:cc","job_id":"policy","seq":3}`)
	heads := []Head{{"job_a", 1, "sha256:aa"}, {"job_b", 12, "sha256:bb"}, {"policy", 3, "sha256:cc"}}
	empty := sha256.Sum256(nil)
	cases := []struct {
		n    int
		want []byte
	}{
		{0, empty[:]},
		{1, l0},
		{2, node(l0, l1)},
		{3, node(node(l0, l1), l2)},
	}
	for _, c := range cases {
		got, err := MerkleRoot(heads[:c.n])
		if err != nil {
			t.Fatal(err)
		}
		if want := hex.EncodeToString(c.want); got != want {
			t.Errorf("%d heads: root %s, want %s", c.n, got, want)
		}
	}
}

func testCheckpoints(t *testing.T, key ed25519.PrivateKey) (first, second Checkpoint) {
	t.Helper()
	first, err := NewCheckpoint("cp1", 1775037723000000,
		[]Head{{"job_b", 2, "sha256:b2"}, {"job_a", 4, "sha256:a4"}}, nil, key)
	if err != nil {
		t.Fatal(err)
	}
	second, err = NewCheckpoint("cp2", 1775037724000000,
		[]Head{{"job_a", 6, "sha256:a6"}, {"policy", 1, "sha256:p1"}}, &first, key)
	if err != nil {
		t.Fatal(err)
	}
	return first, second
}

func TestCheckpointSignVerify(t *testing.T) {
	t.Parallel()
	key := seededKey(1)
	pub := key.Public().(ed25519.PublicKey)
	first, second := testCheckpoints(t, key)
	if first.Heads[0].JobID != "job_a" || first.PrevHash != "" || second.PrevHash != first.Hash {
		t.Fatalf("heads not sorted or chain not linked: %+v / %+v", first, second)
	}
	if first.KeyID != KeyID(pub) || len(first.Signature) != ed25519.SignatureSize {
		t.Fatalf("key id %s, signature %d bytes", first.KeyID, len(first.Signature))
	}
	if err := first.Verify(pub, nil); err != nil {
		t.Fatalf("first: %v", err)
	}
	if err := second.Verify(pub, &first); err != nil {
		t.Fatalf("second: %v", err)
	}
	if err := VerifyCheckpoints(pub, []Checkpoint{first, second}); err != nil {
		t.Fatalf("chain: %v", err)
	}
	if err := VerifyCheckpoints(pub, []Checkpoint{second}); !errors.Is(err, ErrCheckpointInvalid) {
		t.Fatalf("chain without its first checkpoint: %v", err)
	}
}

func TestCheckpointTamper(t *testing.T) {
	t.Parallel()
	key := seededKey(1)
	pub := key.Public().(ed25519.PublicKey)
	other := seededKey(2)
	otherPub := other.Public().(ed25519.PublicKey)
	cases := []struct {
		name   string
		tamper func(c *Checkpoint, first *Checkpoint) (ed25519.PublicKey, *Checkpoint)
		want   error
	}{
		{"modified head hash", func(c, f *Checkpoint) (ed25519.PublicKey, *Checkpoint) {
			c.Heads[0].Hash = "sha256:forged"
			return pub, f
		}, ErrCheckpointInvalid},
		{"modified head seq", func(c, f *Checkpoint) (ed25519.PublicKey, *Checkpoint) {
			c.Heads[1].Seq--
			return pub, f
		}, ErrCheckpointInvalid},
		{"dropped head", func(c, f *Checkpoint) (ed25519.PublicKey, *Checkpoint) {
			c.Heads = c.Heads[:1]
			return pub, f
		}, ErrCheckpointInvalid},
		{"modified root", func(c, f *Checkpoint) (ed25519.PublicKey, *Checkpoint) {
			c.Root = hex.EncodeToString(make([]byte, 32))
			return pub, f
		}, ErrCheckpointInvalid},
		{"heads and root replaced consistently", func(c, f *Checkpoint) (ed25519.PublicKey, *Checkpoint) {
			c.Heads = []Head{{"job_z", 1, "sha256:z1"}}
			c.Root, _ = MerkleRoot(c.Heads)
			return pub, f
		}, ErrCheckpointInvalid},
		{"modified prev link", func(c, f *Checkpoint) (ed25519.PublicKey, *Checkpoint) {
			c.PrevHash = "sha256:0000"
			return pub, f
		}, ErrCheckpointInvalid},
		{"verified against the wrong predecessor", func(c, f *Checkpoint) (ed25519.PublicKey, *Checkpoint) {
			return pub, c
		}, ErrCheckpointInvalid},
		{"verified as first", func(c, f *Checkpoint) (ed25519.PublicKey, *Checkpoint) {
			return pub, nil
		}, ErrCheckpointInvalid},
		{"modified time", func(c, f *Checkpoint) (ed25519.PublicKey, *Checkpoint) {
			c.At++
			return pub, f
		}, ErrCheckpointInvalid},
		{"unsorted heads", func(c, f *Checkpoint) (ed25519.PublicKey, *Checkpoint) {
			c.Heads[0], c.Heads[1] = c.Heads[1], c.Heads[0]
			return pub, f
		}, ErrCheckpointInvalid},
		{"content rewritten and rehashed, not re-signed", func(c, f *Checkpoint) (ed25519.PublicKey, *Checkpoint) {
			c.Heads[0].Hash = "sha256:forged"
			c.Root, _ = MerkleRoot(c.Heads)
			c.Hash, _ = c.computeHash()
			return pub, f
		}, ErrBadSignature},
		{"flipped signature bit", func(c, f *Checkpoint) (ed25519.PublicKey, *Checkpoint) {
			c.Signature[5] ^= 1
			return pub, f
		}, ErrBadSignature},
		{"wrong key", func(c, f *Checkpoint) (ed25519.PublicKey, *Checkpoint) {
			return otherPub, f
		}, ErrBadSignature},
		{"re-signed with another key, key id kept", func(c, f *Checkpoint) (ed25519.PublicKey, *Checkpoint) {
			c.Signature = ed25519.Sign(other, []byte(c.Hash))
			return pub, f
		}, ErrBadSignature},
		{"truncated public key", func(c, f *Checkpoint) (ed25519.PublicKey, *Checkpoint) {
			return pub[:16], f
		}, ErrBadSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			first, second := testCheckpoints(t, key)
			pk, prev := c.tamper(&second, &first)
			if err := second.Verify(pk, prev); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestNewCheckpointRefuses(t *testing.T) {
	t.Parallel()
	key := seededKey(1)
	cases := []struct {
		name  string
		id    string
		at    int64
		heads []Head
		key   ed25519.PrivateKey
	}{
		{"no id", "", 1, nil, key},
		{"no time", "cp", 0, nil, key},
		{"same chain twice", "cp", 1, []Head{{"a", 1, "h"}, {"a", 2, "h2"}}, key},
		{"head without job", "cp", 1, []Head{{"", 1, "h"}}, key},
		{"head without seq", "cp", 1, []Head{{"a", 0, "h"}}, key},
		{"head without hash", "cp", 1, []Head{{"a", 1, ""}}, key},
		{"no key", "cp", 1, nil, nil},
	}
	for _, c := range cases {
		if _, err := NewCheckpoint(c.id, c.at, c.heads, nil, c.key); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
	// Sealing nothing is allowed: the root is that of the empty tree.
	cp, err := NewCheckpoint("cp", 1, nil, nil, key)
	if err != nil || cp.Verify(key.Public().(ed25519.PublicKey), nil) != nil {
		t.Fatalf("empty checkpoint: %v", err)
	}
}
