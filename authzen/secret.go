package authzen

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
)

// Secret is the deployment's root key material for the profile's MACs: the evidence
// signing key's seed, which every replica shares. From is, during a key rotation, the
// seed of the key rotated from; MACs made with it are still accepted.
type Secret struct {
	Key  []byte
	From []byte
}

// The HKDF info strings: one key per use, so a MAC of one kind is never one of another.
const (
	infoTaskID       = "agate authzen arap task-id v1"
	infoEvaluationID = "agate authzen arap evaluation-id v1"
)

// macKeys are the keys derived from a Secret: the current one first, then the
// rotation's from-key's, when there is one.
type macKeys struct {
	task []byte   // the current key's: a task id is always made with it
	eval [][]byte // current first; the from-key's is only verified with
}

func deriveKeys(s Secret) (*macKeys, error) {
	if len(s.Key) < 32 {
		return nil, errors.New("authzen: Attach needs a secret of at least 32 bytes")
	}
	k := &macKeys{}
	var err error
	if k.task, err = hkdf.Key(sha256.New, s.Key, nil, infoTaskID, 32); err != nil {
		return nil, err
	}
	for _, root := range [][]byte{s.Key, s.From} {
		if len(root) == 0 {
			continue
		}
		e, err := hkdf.Key(sha256.New, root, nil, infoEvaluationID, 32)
		if err != nil {
			return nil, err
		}
		k.eval = append(k.eval, e)
	}
	return k, nil
}

func mac(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// signEval is the evaluation_id of payload: eval_ + payload + "." + base64url(HMAC),
// a binding the access request service verifies, not only recomputes.
func (k *macKeys) signEval(payload string) string {
	id := evalPrefix + payload
	return id + "." + base64.RawURLEncoding.EncodeToString(mac(k.eval[0], id))
}

// openEval returns the payload of an evaluation_id whose MAC verifies under the
// current key or the rotation's from-key.
func (k *macKeys) openEval(id string) (string, bool) {
	i := strings.LastIndexByte(id, '.')
	if i < 0 || !strings.HasPrefix(id, evalPrefix) {
		return "", false
	}
	sig, err := base64.RawURLEncoding.DecodeString(id[i+1:])
	if err != nil {
		return "", false
	}
	for _, key := range k.eval {
		if hmac.Equal(sig, mac(key, id[:i])) {
			return id[len(evalPrefix):i], true
		}
	}
	return "", false
}
