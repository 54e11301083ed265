// Command image assembles Agate's container image without a container engine: a
// scratch-based OCI image holding one static agate binary, written as an OCI image
// layout and as a tarball that `docker load` and `podman load` accept.
//
// Everything the image says about its build (version, commit, architecture, creation
// time) is read from the binary's own Go build information, so the labels cannot
// disagree with `agate version`, and the same binary always yields the same digest.
package main

import (
	"archive/tar"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's fixed shape. The runtime user owns only DataDir; everything else is root's
// and read-only to it.
const (
	RuntimeUID  = 65532
	RuntimeGID  = 65532
	BinaryPath  = "/agate"
	DataDir     = "/var/lib/agate"
	CACertsPath = "/etc/ssl/certs/ca-certificates.crt"
	GRPCPort    = "7070/tcp"
	HTTPPort    = "7071/tcp"
)

// Spec is what goes into the image beside the binary.
type Spec struct {
	Binary  []byte // a static linux agate binary
	CACerts []byte // PEM bundle for CACertsPath; nil leaves it out
	Source  string // org.opencontainers.image.source
	License string // org.opencontainers.image.licenses (SPDX)
}

// Stamp is the build identity read from the binary.
type Stamp struct {
	Version  string    // Go module version, "(devel)" without one
	Revision string    // VCS commit, "" without VCS data
	Modified bool      // built from a tree with uncommitted changes
	Time     time.Time // commit time, zero without VCS data
	OS, Arch string
}

// ReadStamp checks that bin is a static, cgo-free linux executable a scratch image can
// run, and returns its build identity.
func ReadStamp(bin []byte) (Stamp, error) {
	ef, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return Stamp{}, fmt.Errorf("binary: not an ELF executable: %w", err)
	}
	defer ef.Close()
	if ef.Type != elf.ET_EXEC && ef.Type != elf.ET_DYN {
		return Stamp{}, fmt.Errorf("binary: ELF type %s is not an executable", ef.Type)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP { // needs a dynamic loader, which scratch lacks
			return Stamp{}, errors.New("binary: dynamically linked; build it with CGO_ENABLED=0")
		}
	}
	bi, err := buildinfo.Read(bytes.NewReader(bin))
	if err != nil {
		return Stamp{}, fmt.Errorf("binary: no Go build information: %w", err)
	}
	s := Stamp{Version: bi.Main.Version}
	if s.Version == "" {
		s.Version = "(devel)"
	}
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "CGO_ENABLED":
			if kv.Value != "0" {
				return Stamp{}, errors.New("binary: built with cgo; build it with CGO_ENABLED=0")
			}
		case "GOOS":
			s.OS = kv.Value
		case "GOARCH":
			s.Arch = kv.Value
		case "vcs.revision":
			s.Revision = kv.Value
		case "vcs.modified":
			s.Modified = kv.Value == "true"
		case "vcs.time":
			if t, err := time.Parse(time.RFC3339, kv.Value); err == nil {
				s.Time = t.UTC()
			}
		}
	}
	if s.OS != "linux" {
		return Stamp{}, fmt.Errorf("binary: built for GOOS=%q; the image needs linux", s.OS)
	}
	if s.Arch == "" {
		return Stamp{}, errors.New("binary: build information names no GOARCH")
	}
	return s, nil
}

// tagUnsafe is every character a Docker tag may not hold.
var tagUnsafe = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// Tag is the image tag for a version: "(devel)" becomes "devel", and characters a tag
// cannot hold (the "+" of "+dirty") become "-".
func (s Stamp) Tag() string {
	v := strings.Trim(s.Version, "()")
	v = tagUnsafe.ReplaceAllString(v, "-")
	v = strings.TrimLeft(v, ".-")
	if v == "" {
		v = "devel"
	}
	if len(v) > 128 {
		v = v[:128]
	}
	return v
}

// Labels are the image's OCI annotations-as-labels.
func (s Stamp) Labels(spec Spec) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       "agate",
		"org.opencontainers.image.description": "Agate: a policy decision point for the actions of AI agents, served over gRPC",
		"org.opencontainers.image.version":     s.Version,
		"org.opencontainers.image.source":      spec.Source,
		"org.opencontainers.image.licenses":    spec.License,
		"org.opencontainers.image.revision":    s.Revision,
	}
	if s.Revision == "" {
		l["org.opencontainers.image.revision"] = "unknown"
	} else if s.Modified {
		l["org.opencontainers.image.revision"] = s.Revision + "-dirty"
	}
	if !s.Time.IsZero() {
		l["org.opencontainers.image.created"] = s.Time.Format(time.RFC3339)
	}
	return l
}

// Build assembles the image: one layer on scratch, OCI media types, created at the
// commit's time (the Unix epoch without one) so that rebuilding is reproducible.
func Build(spec Spec) (v1.Image, Stamp, error) {
	st, err := ReadStamp(spec.Binary)
	if err != nil {
		return nil, Stamp{}, err
	}
	if spec.Source == "" || spec.License == "" {
		return nil, Stamp{}, errors.New("spec: source and license are required")
	}
	created := st.Time
	if created.IsZero() {
		created = time.Unix(0, 0).UTC()
	}
	layerTar, err := rootFS(spec, created)
	if err != nil {
		return nil, Stamp{}, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, Stamp{}, fmt.Errorf("image: layer: %w", err)
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "deploy/image: agate binary, passwd, group, data directory",
			Comment:   "assembled without a container engine",
		},
	})
	if err != nil {
		return nil, Stamp{}, fmt.Errorf("image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, Stamp{}, fmt.Errorf("image: config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = st.OS, st.Arch
	cf.Created = v1.Time{Time: created}
	cf.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", RuntimeUID, RuntimeGID),
		Entrypoint: []string{BinaryPath},
		Cmd:        []string{"serve"},
		WorkingDir: DataDir,
		// A container is reached from outside itself, so listen on every interface
		// rather than the binary's loopback default; flags still override.
		Env:          []string{"AGATE_GRPC_ADDR=:7070", "AGATE_HTTP_ADDR=:7071"},
		ExposedPorts: map[string]struct{}{GRPCPort: {}, HTTPPort: {}},
		Labels:       st.Labels(spec),
		StopSignal:   "SIGTERM",
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, Stamp{}, fmt.Errorf("image: config: %w", err)
	}
	return img, st, nil
}

// rootFS is the layer's tar: only what the binary needs, no shell, no package manager.
// Files are root's and not writable by the runtime user, except its data directory.
func rootFS(spec Spec, mtime time.Time) ([]byte, error) {
	type entry struct {
		name     string
		mode     int64
		uid, gid int
		data     []byte // nil for a directory
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:%s:/sbin/nologin\n", RuntimeUID, RuntimeGID, DataDir)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", RuntimeGID)
	entries := []entry{
		{name: "etc/", mode: 0o755},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
	}
	if spec.CACerts != nil {
		entries = append(entries,
			entry{name: "etc/ssl/", mode: 0o755},
			entry{name: "etc/ssl/certs/", mode: 0o755},
			entry{name: strings.TrimPrefix(CACertsPath, "/"), mode: 0o644, data: spec.CACerts})
	}
	entries = append(entries,
		entry{name: "var/", mode: 0o755},
		entry{name: "var/lib/", mode: 0o755},
		entry{name: strings.TrimPrefix(DataDir, "/") + "/", mode: 0o700, uid: RuntimeUID, gid: RuntimeGID},
		entry{name: strings.TrimPrefix(BinaryPath, "/"), mode: 0o555, data: spec.Binary},
	)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: mtime.Truncate(time.Second), Format: tar.FormatPAX}
		if e.data == nil {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("image: layer: %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("image: layer: %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	return buf.Bytes(), nil
}

// readOptional reads path, or returns nil when it does not exist.
func readOptional(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}
