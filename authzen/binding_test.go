package authzen_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"

	"github.com/agate-pdp/agate/authzen"
)

// TestBindingHashVectors checks BindingHash against the vectors of
// testdata/arap/binding-hash.json (see testdata/arap/SOURCE.md for where they come
// from): the JCS text hashed, its SHA-256 and the binding_hash.
func TestBindingHashVectors(t *testing.T) {
	raw, err := os.ReadFile("testdata/arap/binding-hash.json")
	if err != nil {
		t.Fatal(err)
	}
	var manifest struct {
		Vectors []struct {
			ID          string          `json:"id"`
			Kind        string          `json:"kind"`
			Request     json.RawMessage `json:"request"`
			RequestJSON string          `json:"request_json"` // the request as sent, when its number forms matter
			Members     []string        `json:"binding_context_members"`
			JCS         string          `json:"jcs"`
			SHA256Hex   string          `json:"sha256_hex"`
			BindingHash string          `json:"binding_hash"`
		} `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &manifest); err != nil {
		t.Fatal(err)
	}
	if len(manifest.Vectors) < 9 {
		t.Fatalf("%d vectors", len(manifest.Vectors))
	}
	for _, v := range manifest.Vectors {
		t.Run(v.ID, func(t *testing.T) {
			if v.Kind != "single" {
				t.Fatalf("kind %q: only single-item bindings are implemented", v.Kind)
			}
			src := []byte(v.RequestJSON)
			if v.RequestJSON == "" {
				src = v.Request
			}
			d := json.NewDecoder(bytes.NewReader(src))
			d.UseNumber()
			var req struct {
				Subject, Resource, Action, Context map[string]any
			}
			if err := d.Decode(&req); err != nil {
				t.Fatal(err)
			}
			got, jcs, err := authzen.BindingHash(req.Subject, req.Resource, req.Action, req.Context, v.Members)
			if err != nil {
				t.Fatal(err)
			}
			if string(jcs) != v.JCS {
				t.Errorf("JCS\n got %s\nwant %s", jcs, v.JCS)
			}
			if got != v.BindingHash {
				t.Errorf("binding_hash %s, want %s", got, v.BindingHash)
			}
			sum, _ := base64.RawURLEncoding.DecodeString(got)
			if hex.EncodeToString(sum) != v.SHA256Hex {
				t.Errorf("sha256 %x, want %s", sum, v.SHA256Hex)
			}
		})
	}
}
