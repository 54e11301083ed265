package authzen

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"maps"

	"github.com/agate-pdp/agate/canonical"
)

// BindingHash is the Access Request and Approval Profile's binding_hash of one denied
// evaluation (draft section "Denial Binding Claims"): the unpadded base64url SHA-256
// digest of the RFC 8785 (JCS) form of
//
//	{"subject": <Subject>, "resource": <Resource>, "action": <Action>, "context": <Context>}
//
// where <Subject> lacks properties.act and <Context> holds exactly the members of
// context named in members that context has (an absent member stays absent; a null
// one is kept). Values are decoded JSON: map[string]any, []any, string, bool, nil,
// json.Number or float64. It also returns the JCS text hashed.
func BindingHash(subject, resource, action, context map[string]any, members []string) (string, []byte, error) {
	sel := map[string]any{}
	for _, m := range members {
		if v, ok := context[m]; ok {
			sel[m] = v
		}
	}
	in := map[string]any{"subject": withoutAct(subject), "resource": resource, "action": action, "context": sel}
	jcs, err := canonical.Append(nil, in)
	if err != nil {
		return "", nil, fmt.Errorf("binding hash: %w", err)
	}
	sum := sha256.Sum256(jcs)
	return base64.RawURLEncoding.EncodeToString(sum[:]), jcs, nil
}

// withoutAct is s with properties.act removed; s itself is not changed.
func withoutAct(s map[string]any) map[string]any {
	props, ok := s["properties"].(map[string]any)
	if !ok {
		return s
	}
	if _, has := props["act"]; !has {
		return s
	}
	out := maps.Clone(s)
	p := maps.Clone(props)
	delete(p, "act")
	out["properties"] = p
	return out
}
