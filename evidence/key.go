package evidence

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// maxKeyFile bounds what is read from a key file; a PEM Ed25519 key is ~120 bytes.
const maxKeyFile = 64 << 10

// LoadOrCreateKey loads the checkpoint signing key from a PEM PKCS#8 file, or creates
// one (mode 0600, its directory 0700 when created) if the file does not exist. It
// refuses a key file that group or others may access. The key lives outside the
// database so that whoever can write rows cannot re-sign checkpoints. Concurrent
// creators agree on one key: the file appears atomically and only once.
func LoadOrCreateKey(path string) (key ed25519.PrivateKey, created bool, err error) {
	key, err = loadKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, false, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("evidence: key directory: %w", err)
	}
	_, key, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("evidence: generating key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, false, fmt.Errorf("evidence: encoding key: %w", err)
	}
	if err := writeNew(dir, path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		if errors.Is(err, fs.ErrExist) { // another process created it first: use theirs
			key, err = loadKey(path)
			return key, false, err
		}
		return nil, false, err
	}
	return key, true, nil
}

// writeNew writes data to a 0600 temporary file and links it to path, which fails
// with fs.ErrExist rather than replace a key another process just wrote.
func writeNew(dir, path string, data []byte) error {
	tmp, err := os.CreateTemp(dir, ".agate-key-*") // mode 0600
	if err != nil {
		return fmt.Errorf("evidence: writing key: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("evidence: writing key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("evidence: writing key: %w", err)
	}
	return nil
}

// LoadKey loads a key file as LoadOrCreateKey does, and never creates one.
func LoadKey(path string) (ed25519.PrivateKey, error) { return loadKey(path) }

// CreateKey creates a new key file at path, refusing to replace one (fs.ErrExist).
func CreateKey(path string) (ed25519.PrivateKey, error) {
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("evidence: key file %s: %w", path, fs.ErrExist)
	}
	key, created, err := LoadOrCreateKey(path)
	if err == nil && !created {
		return nil, fmt.Errorf("evidence: key file %s: %w", path, fs.ErrExist)
	}
	return key, err
}

func loadKey(path string) (ed25519.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("evidence: key file %s is not a regular file", path)
	}
	// Windows has no Unix permission bits to check.
	if runtime.GOOS != "windows" {
		if err := keyModeOK(fi.Mode().Perm(), fileOwner(fi), os.Geteuid()); err != nil {
			return nil, fmt.Errorf("evidence: key file %s %w", path, err)
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile))
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("evidence: key file %s holds no PEM PRIVATE KEY", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("evidence: key file %s: %w", path, err)
	}
	ed, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("evidence: key file %s holds a %T, not an Ed25519 key", path, k)
	}
	return ed, nil
}

// KeyID names a public key: "ed25519:" + the first 16 hex digits of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:8])
}

// MarshalPublicKey encodes pub as a PEM PUBLIC KEY (PKIX), the form verifiers pin.
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("evidence: encoding public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKey decodes a PEM PUBLIC KEY holding an Ed25519 key.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("evidence: no PEM PUBLIC KEY found")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("evidence: public key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("evidence: public key is a %T, not Ed25519", k)
	}
	return pub, nil
}

// keyModeOK is PostgreSQL's rule for its server key: a key owned by this process's user
// is readable by nobody else (0600 or less); a key owned by root may also be read by
// its group (0640 or less), which is how Kubernetes mounts a Secret for a non-root pod
// (root-owned, group set by fsGroup). owner is -1 when unknown.
func keyModeOK(perm os.FileMode, owner, self int) error {
	switch {
	case owner == self || owner == -1:
		if perm&0o077 != 0 {
			return fmt.Errorf("has mode %04o; group and others must have no access (chmod 600)", perm)
		}
	case owner == 0:
		if perm&0o037 != 0 {
			return fmt.Errorf("is owned by root with mode %04o; others must have no access and its group may only read (chmod 640)", perm)
		}
	default:
		return fmt.Errorf("is owned by user %d, neither this process's user (%d) nor root", owner, self)
	}
	return nil
}
