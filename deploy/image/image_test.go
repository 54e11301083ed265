package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// fakeAgate is a tiny static Go program standing in for agate: building the real server
// here would cost a minute; what the image builder reads (ELF, build information) is
// the same.
var fakeAgate = sync.OnceValues(func() ([]byte, error) {
	dir, err := os.MkdirTemp("", "agate-image-test-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	files := map[string]string{
		"go.mod":  "module example.com/fakeagate\n\ngo 1.26\n",
		"main.go": "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"agate\") }\n",
	}
	for n, s := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(s), 0o644); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", "agate", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, &exec.ExitError{Stderr: out}
	}
	return os.ReadFile(filepath.Join(dir, "agate"))
})

func testSpec(t *testing.T) Spec {
	t.Helper()
	bin, err := fakeAgate()
	if err != nil {
		t.Fatalf("building the stand-in binary: %v", err)
	}
	return Spec{Binary: bin, CACerts: []byte("-----BEGIN CERTIFICATE-----\n"), Source: "https://github.com/agate-pdp/agate", License: "Apache-2.0"}
}

// TestImageReadBack writes the image both ways and checks what a runtime would see in
// each: the config, and every file of the root filesystem.
func TestImageReadBack(t *testing.T) {
	t.Parallel()
	spec := testSpec(t)
	dir := t.TempDir()
	o, err := Write(spec, dir, "agate")
	if err != nil {
		t.Fatal(err)
	}
	if o.Ref != "agate:devel" {
		t.Errorf("ref %q, want agate:devel", o.Ref)
	}

	p, err := layout.FromPath(o.Layout)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("layout holds %d manifests, want 1", len(im.Manifests))
	}
	if got := im.Manifests[0].Annotations["org.opencontainers.image.ref.name"]; got != "devel" {
		t.Errorf("layout ref.name %q, want devel", got)
	}
	fromLayout, err := p.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(o.Ref)
	fromTar, err := tarball.ImageFromPath(o.Tarball, &tag)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		img  v1.Image
	}{{"layout", fromLayout}, {"tarball", fromTar}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, _ := ReadStamp(spec.Binary)
			checkConfig(t, tc.img, st.Labels(spec))
			checkFiles(t, tc.img, spec)
		})
	}
	if d, _ := fromLayout.Digest(); d != o.Digest {
		t.Errorf("layout digest %s, want %s", d, o.Digest)
	}
	if mt, _ := fromLayout.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s, want OCI", mt)
	}
}

func checkConfig(t *testing.T, img v1.Image, want map[string]string) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	uid, gid, ok := strings.Cut(c.User, ":")
	for _, id := range []string{uid, gid} {
		n, err := strconv.Atoi(id)
		if !ok || err != nil || n == 0 {
			t.Errorf("user %q: want numeric non-root uid:gid", c.User)
		}
	}
	if got := strings.Join(c.Entrypoint, " "); got != "/agate" {
		t.Errorf("entrypoint %q, want /agate", got)
	}
	if got := strings.Join(c.Cmd, " "); got != "serve" {
		t.Errorf("cmd %q, want serve", got)
	}
	if c.WorkingDir != DataDir {
		t.Errorf("working dir %q, want %s", c.WorkingDir, DataDir)
	}
	for _, port := range []string{"7070/tcp", "7071/tcp"} {
		if _, ok := c.ExposedPorts[port]; !ok {
			t.Errorf("port %s not exposed", port)
		}
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	for _, k := range []string{"title", "version", "revision", "source", "licenses"} {
		if c.Labels["org.opencontainers.image."+k] == "" {
			t.Errorf("label org.opencontainers.image.%s missing", k)
		}
	}
	for k, v := range want {
		if got := c.Labels[k]; got != v {
			t.Errorf("label %s = %q, want %q", k, got, v)
		}
	}
	if len(cf.History) != 1 || len(cf.RootFS.DiffIDs) != 1 {
		t.Errorf("%d history entries and %d layers, want one of each", len(cf.History), len(cf.RootFS.DiffIDs))
	}
}

// shells are the names of every shell or multi-call binary that would give an attacker
// in the container a command line.
var shells = map[string]bool{"sh": true, "bash": true, "ash": true, "dash": true, "zsh": true,
	"ksh": true, "mksh": true, "csh": true, "tcsh": true, "fish": true, "busybox": true, "toybox": true}

func checkFiles(t *testing.T, img v1.Image, spec Spec) {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	seen := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n := path.Clean("/" + h.Name)
		seen[n] = h
		mode := os.FileMode(h.Mode)
		if shells[path.Base(n)] || strings.HasSuffix(n, "/bin") || strings.Contains(n, "/bin/") {
			t.Errorf("%s: a shell or bin directory in the image", n)
		}
		if h.Typeflag != tar.TypeDir && h.Typeflag != tar.TypeReg {
			t.Errorf("%s: type %q; want only directories and regular files (no links or devices)", n, h.Typeflag)
		}
		if h.Mode&0o7000 != 0 {
			t.Errorf("%s: mode %04o has setuid, setgid or sticky bits", n, h.Mode)
		}
		if mode&0o002 != 0 {
			t.Errorf("%s: world-writable (%04o)", n, h.Mode)
		}
		if n == DataDir {
			if h.Uid != RuntimeUID || h.Gid != RuntimeGID || h.Mode&0o777 != 0o700 {
				t.Errorf("%s: %d:%d %04o, want %d:%d 0700", n, h.Uid, h.Gid, h.Mode, RuntimeUID, RuntimeGID)
			}
			continue
		}
		// Everything but the data directory is root's and not writable by the runtime user.
		if h.Uid != 0 || h.Gid != 0 || mode&0o022 != 0 {
			t.Errorf("%s: %d:%d %04o, want root's and writable by root alone", n, h.Uid, h.Gid, h.Mode)
		}
		if h.Typeflag == tar.TypeReg && mode&0o111 != 0 && n != BinaryPath {
			t.Errorf("%s: executable, but the image's only executable is %s", n, BinaryPath)
		}
		if n == BinaryPath {
			got, _ := io.ReadAll(tr)
			if h.Typeflag != tar.TypeReg || h.Mode&0o777 != 0o555 || !bytes.Equal(got, spec.Binary) {
				t.Errorf("%s: type %q mode %04o, %d bytes; want the binary, 0555", n, h.Typeflag, h.Mode, len(got))
			}
		}
	}
	want := []string{BinaryPath, DataDir, "/etc/passwd", "/etc/group"}
	if spec.CACerts != nil {
		want = append(want, CACertsPath)
	}
	for _, n := range want {
		if seen[n] == nil {
			t.Errorf("%s missing from the image", n)
		}
	}
}

// TestBuiltImage checks the image `make image` wrote (AGATE_IMAGE_DIR, holding agate,
// agate-image/ and agate-image.tar) as TestImageReadBack checks its own; `make image`
// runs it, and without the variable it has nothing to check.
func TestBuiltImage(t *testing.T) {
	dir := os.Getenv("AGATE_IMAGE_DIR")
	if dir == "" {
		t.Skip("AGATE_IMAGE_DIR is not set: `make image` runs this against what it built")
	}
	bin, err := os.ReadFile(filepath.Join(dir, "agate"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := ReadStamp(bin)
	if err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(filepath.Join(dir, "agate-image"))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("layout index: %v, %d manifests; want 1", err, len(im.Manifests))
	}
	fromLayout, err := p.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	fromTar, err := tarball.ImageFromPath(filepath.Join(dir, "agate-image.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{Binary: bin}
	want := map[string]string{"org.opencontainers.image.version": st.Version}
	for _, img := range []v1.Image{fromLayout, fromTar} {
		checkConfig(t, img, want)
		checkFiles(t, img, spec)
	}
	// A docker tarball keeps no manifest, so compare the image IDs (config digests).
	dl, _ := fromLayout.ConfigName()
	dt, _ := fromTar.ConfigName()
	if dl != dt {
		t.Errorf("layout %s and tarball %s hold different images", dl, dt)
	}
}

func TestReproducible(t *testing.T) {
	t.Parallel()
	spec := testSpec(t)
	var digests []v1.Hash
	for range 2 {
		img, _, err := Build(spec)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
	}
	if digests[0] != digests[1] {
		t.Errorf("two builds of one binary differ: %s, %s", digests[0], digests[1])
	}
}

func TestWithoutCACerts(t *testing.T) {
	t.Parallel()
	spec := testSpec(t)
	spec.CACerts = nil
	img, _, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(h.Name, "etc/ssl") {
			t.Errorf("%s present without a CA bundle", h.Name)
		}
	}
}

// TestRefusesUnrunnableBinary: a scratch image can run only a static linux binary.
func TestRefusesUnrunnableBinary(t *testing.T) {
	t.Parallel()
	good := testSpec(t)
	cases := map[string]Spec{
		"not ELF":    {Binary: []byte("#!/bin/sh\necho agate\n"), Source: good.Source, License: good.License},
		"no source":  {Binary: good.Binary, License: good.License},
		"no license": {Binary: good.Binary, Source: good.Source},
	}
	// Any dynamically linked program of this machine stands for a cgo build.
	for _, p := range []string{"/bin/ls", "/usr/bin/env"} {
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte("ld-linux")) {
			cases["dynamic "+p] = Spec{Binary: b, Source: good.Source, License: good.License}
			break
		}
	}
	for name, spec := range cases {
		if _, _, err := Build(spec); err == nil {
			t.Errorf("%s: built an image", name)
		}
	}
}

func TestTag(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]string{
		"(devel)": "devel",
		"":        "devel",
		"v1.2.3":  "v1.2.3",
		"v0.0.0-20260101120000-abcdef123456+dirty": "v0.0.0-20260101120000-abcdef123456-dirty",
	} {
		got := Stamp{Version: v}.Tag()
		if got != want {
			t.Errorf("Tag(%q) = %q, want %q", v, got, want)
		}
		if _, err := name.NewTag("agate:" + got); err != nil {
			t.Errorf("Tag(%q) = %q is not a valid tag: %v", v, got, err)
		}
	}
}
