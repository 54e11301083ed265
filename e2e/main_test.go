package e2e

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMain removes the binary and key directories the tests made in the temporary
// directory, so runs leave nothing behind.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	for _, k := range keys {
		_ = os.RemoveAll(filepath.Dir(k))
	}
	os.Exit(code)
}
