//go:build unix

package evidence

import (
	"os"
	"syscall"
)

// fileOwner is the uid owning fi, or -1 when the platform does not say.
func fileOwner(fi os.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}
