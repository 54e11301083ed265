// Package buildinfo owns what a binary says about itself: the module version, the commit
// it was built from and the Go version, as the Go toolchain stamped them at build time.
package buildinfo

import (
	"fmt"
	"runtime/debug"
)

// Info is a binary's identity.
type Info struct {
	Version   string // module version; "(devel)" for a build from a work tree
	Commit    string // VCS revision, with "-dirty" when the tree had changes; "unknown" without VCS data
	GoVersion string
}

// Read returns the running binary's Info.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: "unknown", Commit: "unknown", GoVersion: "unknown"}
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) Info {
	in := Info{Version: bi.Main.Version, Commit: "unknown", GoVersion: bi.GoVersion}
	if in.Version == "" {
		in.Version = "(devel)"
	}
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Commit = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && in.Commit != "unknown" {
		in.Commit += "-dirty"
	}
	return in
}

// String is the one line `agate version` prints.
func String() string {
	in := Read()
	return fmt.Sprintf("agate %s (commit %s, %s)", in.Version, in.Commit, in.GoVersion)
}
