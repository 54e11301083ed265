package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "image:", err)
		}
		os.Exit(2)
	}
}

// Outputs names what run wrote.
type Outputs struct {
	Ref     string // repository:tag
	Digest  v1.Hash
	Layout  string // OCI image layout directory
	Tarball string // docker-loadable tarball
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	binary := fs.String("binary", "", "static linux agate binary (required)")
	out := fs.String("out", "dist", "directory for agate-image/ (OCI layout) and agate-image.tar")
	repo := fs.String("repository", "agate", "image repository name for the tag")
	source := fs.String("source", "https://github.com/agate-pdp/agate", "org.opencontainers.image.source")
	license := fs.String("license", "NOASSERTION", "org.opencontainers.image.licenses (SPDX expression)")
	caCerts := fs.String("ca-certs", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to include; left out when the file does not exist, or when empty")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *binary == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("--binary is required and no arguments are taken")
	}
	bin, err := os.ReadFile(*binary)
	if err != nil {
		return err
	}
	spec := Spec{Binary: bin, Source: *source, License: *license}
	if *caCerts != "" {
		if spec.CACerts, err = readOptional(*caCerts); err != nil {
			return fmt.Errorf("--ca-certs: %w", err)
		}
	}
	o, err := Write(spec, *out, *repo)
	if err != nil {
		return err
	}
	certs := "with the CA bundle from " + *caCerts
	if spec.CACerts == nil {
		certs = "without CA certificates"
	}
	fmt.Fprintf(stdout, "image %s@%s (%s)\n  OCI layout: %s\n  tarball:    %s  (docker load -i %s)\n",
		o.Ref, o.Digest, certs, o.Layout, o.Tarball, o.Tarball)
	return nil
}

// Write builds the image and writes it under dir as an OCI image layout (agate-image/)
// and a docker-loadable tarball (agate-image.tar), both tagged repo:version.
func Write(spec Spec, dir, repo string) (Outputs, error) {
	img, st, err := Build(spec)
	if err != nil {
		return Outputs{}, err
	}
	tag, err := name.NewTag(repo + ":" + st.Tag())
	if err != nil {
		return Outputs{}, fmt.Errorf("tag: %w", err)
	}
	o := Outputs{Ref: tag.String(), Layout: filepath.Join(dir, "agate-image"), Tarball: filepath.Join(dir, "agate-image.tar")}
	if o.Digest, err = img.Digest(); err != nil {
		return Outputs{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Outputs{}, err
	}
	// A layout directory accumulates blobs; start it afresh so it holds one image.
	if err := os.RemoveAll(o.Layout); err != nil {
		return Outputs{}, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	p, err := layout.Write(o.Layout, idx)
	if err != nil {
		return Outputs{}, fmt.Errorf("layout: %w", err)
	}
	err = p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": tag.TagStr(),
		"io.containerd.image.name":          tag.String(),
	}))
	if err != nil {
		return Outputs{}, fmt.Errorf("layout: %w", err)
	}
	if err := tarball.WriteToFile(o.Tarball, tag, img); err != nil {
		return Outputs{}, fmt.Errorf("tarball: %w", err)
	}
	return o, nil
}
