package canonical

import (
	"crypto/sha256"
	"encoding/hex"
	"unicode/utf8"
)

// JobHash returns the hash that binds an approval to a job's content:
//
//	"sha256:" + lowercase hex(SHA-256(JCS({"actor":actor,"labels":labels,"payload":payload,"topic":topic})))
//
// Nil labels and an empty payload hash as {}. The payload must be a JSON
// object; errors in it carry paths under "payload", errors in labels paths
// under "labels".
func JobHash(topic, actor string, labels map[string]any, payload []byte) (string, error) {
	s := getState(true, "")
	defer putState(s)
	s.out = s.buf[:0]
	// The members are written in canonical order: actor, labels, payload, topic.
	s.out = append(s.out, `{"actor":`...)
	if !utf8.ValidString(actor) {
		return "", &Error{Path: "actor", Msg: "invalid UTF-8 in string"}
	}
	s.out = appendString(s.out, actor)

	s.out = append(s.out, `,"labels":`...)
	s.root = "labels"
	if labels == nil {
		s.out = append(s.out, "{}"...)
	} else if err := appendMap(s, labels, (*state).appendValue); err != nil {
		return "", err
	}

	s.out = append(s.out, `,"payload":`...)
	s.root = "payload"
	if len(payload) == 0 {
		s.out = append(s.out, "{}"...)
	} else {
		if !isObject(payload) {
			return "", &Error{Path: "payload", Msg: "must be a JSON object"}
		}
		if err := s.document(payload); err != nil {
			return "", err
		}
	}

	s.out = append(s.out, `,"topic":`...)
	if !utf8.ValidString(topic) {
		return "", &Error{Path: "topic", Msg: "invalid UTF-8 in string"}
	}
	s.out = appendString(s.out, topic)
	s.out = append(s.out, '}')

	sum := sha256.Sum256(s.out)
	s.buf = s.out
	var text [len("sha256:") + 2*sha256.Size]byte
	copy(text[:], "sha256:")
	hex.Encode(text[len("sha256:"):], sum[:])
	return string(text[:]), nil
}

// isObject reports whether the first non-blank byte opens an object.
func isObject(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '{':
			return true
		default:
			return false
		}
	}
	return false
}
