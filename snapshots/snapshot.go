package snapshots

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/agate-pdp/agate/decision"
)

// Snapshot is one immutable policy version.
type Snapshot struct {
	ID        string    // "snap_" + first 16 hex digits of SHA256
	SHA256    string    // lowercase hex digest of Source
	Source    []byte    // canonical source (see Canonical)
	RuleCount int       // rules in the policy
	CreatedAt time.Time // when this content was first stored
	CreatedBy string    // principal that first stored it
}

// ErrMismatch reports a snapshot whose source no longer hashes to its recorded digest.
var ErrMismatch = errors.New("snapshots: source does not match its sha256")

// Canonical returns the form of a policy source that is hashed and stored: line endings
// normalised to "\n" and exactly one trailing newline. It keeps the author's text (and so
// the line numbers in error messages) while making byte-level noise irrelevant.
func Canonical(src []byte) []byte {
	s := strings.ReplaceAll(string(src), "\r\n", "\n")
	s = strings.TrimRight(s, "\n") + "\n"
	return []byte(s)
}

// Digest returns the sha256 hex digest and the snapshot id of a canonical source.
func Digest(canonical []byte) (sha string, id string) {
	sum := sha256.Sum256(canonical)
	sha = hex.EncodeToString(sum[:])
	return sha, IDFromSHA(sha)
}

// IDFromSHA derives the snapshot id from a hex digest.
func IDFromSHA(sha string) string { return "snap_" + sha[:16] }

// New parses, validates and compiles src, returning the snapshot it would be stored as,
// its compiled engine and the policy's warnings. Parse errors are decision.PolicyError.
// src is a new policy, held to decision.ParseNew (stored snapshots load leniently).
func New(src []byte, createdBy string, now time.Time) (Snapshot, *decision.Engine, []decision.Warning, error) {
	canon := Canonical(src)
	p, err := decision.ParseNew(canon)
	if err != nil {
		return Snapshot{}, nil, nil, err
	}
	eng, err := decision.Compile(p)
	if err != nil {
		return Snapshot{}, nil, nil, err
	}
	sha, id := Digest(canon)
	return Snapshot{
		ID:        id,
		SHA256:    sha,
		Source:    canon,
		RuleCount: p.RuleCount(),
		CreatedAt: now.UTC().Truncate(time.Microsecond),
		CreatedBy: createdBy,
	}, eng, p.Warnings(), nil
}

// Verify checks that a stored snapshot's source still hashes to its digest and id.
func (s Snapshot) Verify() error {
	sha, id := Digest(s.Source)
	if sha != s.SHA256 || id != s.ID || !bytes.Equal(Canonical(s.Source), s.Source) {
		return fmt.Errorf("%w: %s", ErrMismatch, s.ID)
	}
	return nil
}
