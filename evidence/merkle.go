package evidence

import (
	"crypto/sha256"
	"encoding/hex"
	"math/bits"

	"github.com/agate-pdp/agate/canonical"
)

// Domain separation as in RFC 6962 §2.1, so a leaf can never be passed off as a node.
const (
	leafPrefix = 0x00
	nodePrefix = 0x01
)

// MerkleRoot returns the lower-case hex RFC 6962 Merkle tree hash over heads in the
// order given, each leaf being sha256(0x00 || JCS({"hash","job_id","seq"})).
// Checkpoints order heads by job id.
func MerkleRoot(heads []Head) (string, error) {
	leaves := make([][sha256.Size]byte, len(heads))
	var buf []byte
	for i, h := range heads {
		var err error
		buf, err = canonical.Append(append(buf[:0], leafPrefix), map[string]any{
			"job_id": h.JobID, "seq": h.Seq, "hash": h.Hash,
		})
		if err != nil {
			return "", err
		}
		leaves[i] = sha256.Sum256(buf)
	}
	root := treeHash(leaves)
	return hex.EncodeToString(root[:]), nil
}

// treeHash is RFC 6962's MTH: the empty tree hashes to sha256(""), and a larger tree
// splits at the largest power of two smaller than its size.
func treeHash(leaves [][sha256.Size]byte) [sha256.Size]byte {
	switch n := len(leaves); n {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return leaves[0]
	default:
		k := 1 << (bits.Len(uint(n-1)) - 1)
		l, r := treeHash(leaves[:k]), treeHash(leaves[k:])
		var node [1 + 2*sha256.Size]byte
		node[0] = nodePrefix
		copy(node[1:], l[:])
		copy(node[1+sha256.Size:], r[:])
		return sha256.Sum256(node[:])
	}
}
