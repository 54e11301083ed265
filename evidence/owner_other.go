//go:build !unix

package evidence

import "os"

// fileOwner is -1: this platform has no Unix owner to check.
func fileOwner(os.FileInfo) int { return -1 }
