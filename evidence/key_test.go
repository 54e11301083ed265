package evidence

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func TestLoadOrCreateKey(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "agate", "keys")
	path := filepath.Join(dir, "checkpoint.pem")
	key, created, err := LoadOrCreateKey(path)
	if err != nil || !created || len(key) != ed25519.PrivateKeySize {
		t.Fatalf("create: created=%v err=%v", created, err)
	}
	if runtime.GOOS != "windows" {
		for p, want := range map[string]os.FileMode{path: 0o600, dir: 0o700} {
			fi, err := os.Stat(p)
			if err != nil || fi.Mode().Perm() != want {
				t.Errorf("%s: mode %v, want %v (%v)", p, fi.Mode().Perm(), want, err)
			}
		}
	}
	again, created, err := LoadOrCreateKey(path)
	if err != nil || created || !key.Equal(again) {
		t.Fatalf("reload: created=%v err=%v same=%v", created, err, key.Equal(again))
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the key", len(entries))
	}
}

func TestLoadOrCreateKeyRefuses(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permission bits")
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	cases := []struct {
		name    string
		mode    os.FileMode
		content []byte
		want    string
	}{
		{"group readable", 0o640, nil, "mode"},
		{"world readable", 0o604, nil, "mode"},
		{"group writable", 0o620, nil, "mode"},
		{"not PEM", 0o600, []byte("not a key"), "PEM"},
		{"public key", 0o600, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}), "PEM"},
		{"ECDSA key", 0o600, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}), "Ed25519"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "key.pem")
			content := c.content
			if content == nil {
				if _, _, err := LoadOrCreateKey(path); err != nil {
					t.Fatal(err)
				}
				content, _ = os.ReadFile(path)
			}
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, c.mode); err != nil {
				t.Fatal(err)
			}
			_, created, err := LoadOrCreateKey(path)
			if err == nil || created || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got created=%v err=%v, want an error about %s", created, err, c.want)
			}
			if after, _ := os.ReadFile(path); string(after) != string(content) {
				t.Fatal("a refused key file was overwritten")
			}
		})
	}
}

// TestLoadOrCreateKeyConcurrent: replicas starting together end up with one key.
func TestLoadOrCreateKeyConcurrent(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "k", "key.pem")
	const n = 8
	keys := make([]ed25519.PrivateKey, n)
	made := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], made[i], errs[i] = LoadOrCreateKey(path) })
	}
	wg.Wait()
	creators := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if !keys[i].Equal(keys[0]) {
			t.Fatalf("caller %d got a different key", i)
		}
		if made[i] {
			creators++
		}
	}
	if creators != 1 {
		t.Fatalf("%d callers report creating the key, want 1", creators)
	}
}

func TestPublicKeyPEM(t *testing.T) {
	t.Parallel()
	pub := seededKey(3).Public().(ed25519.PublicKey)
	data, err := MarshalPublicKey(pub)
	if err != nil || !strings.HasPrefix(string(data), "-----BEGIN PUBLIC KEY-----") {
		t.Fatalf("marshal: %v\n%s", err, data)
	}
	back, err := ParsePublicKey(data)
	if err != nil || !back.Equal(pub) {
		t.Fatalf("round trip: %v", err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	privDER, _ := x509.MarshalPKCS8PrivateKey(seededKey(3))
	for name, bad := range map[string][]byte{
		"garbage":     []byte("ed25519 key"),
		"ECDSA key":   pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER}),
		"private key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}),
		"bad DER":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{0x30, 1}}),
	} {
		if _, err := ParsePublicKey(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestKeyID(t *testing.T) {
	t.Parallel()
	pub := seededKey(4).Public().(ed25519.PublicKey)
	sum := sha256.Sum256(pub)
	if got, want := KeyID(pub), "ed25519:"+hex.EncodeToString(sum[:])[:16]; got != want {
		t.Fatalf("KeyID %s, want %s", got, want)
	}
	if KeyID(pub) == KeyID(seededKey(5).Public().(ed25519.PublicKey)) {
		t.Fatal("two keys share an id")
	}
}

func TestKeyModeOK(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		perm        os.FileMode
		owner, self int
		ok          bool
	}{
		{0o600, 1000, 1000, true},
		{0o400, 1000, 1000, true},
		{0o640, 1000, 1000, false},
		{0o604, 1000, 1000, false},
		{0o440, 0, 65532, true}, // a Kubernetes Secret mounted for a non-root pod with fsGroup
		{0o640, 0, 65532, true},
		{0o660, 0, 65532, false}, // group may not write
		{0o644, 0, 65532, false}, // others may not read
		{0o640, 0, 0, false},     // a root process keeps its own key private
		{0o600, 1001, 1000, false},
		{0o600, -1, 1000, true},
	} {
		if err := keyModeOK(tc.perm, tc.owner, tc.self); (err == nil) != tc.ok {
			t.Errorf("mode %04o owner %d self %d: %v, want ok=%v", tc.perm, tc.owner, tc.self, err, tc.ok)
		}
	}
}
