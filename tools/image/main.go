package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	var s Spec
	var repo, tarOut, layoutOut, created string
	flag.StringVar(&s.Binary, "binary", "", "the static rollguard binary (CGO_ENABLED=0, GOOS=linux)")
	flag.StringVar(&s.Arch, "arch", runtime.GOARCH, "the binary's GOARCH")
	flag.StringVar(&s.Version, "version", "", "rollguard's version: the image's tag")
	flag.StringVar(&s.Revision, "revision", "", "the commit")
	flag.StringVar(&s.Source, "source", "https://github.com/rollguard/rollguard", "the repository's URL")
	flag.StringVar(&s.CACerts, "ca-certs", CACerts, "CA bundle to include (\"\" for none)")
	flag.StringVar(&created, "created", "", "creation time: RFC 3339 or Unix seconds (default $SOURCE_DATE_EPOCH, else now)")
	flag.StringVar(&repo, "repository", "ghcr.io/rollguard/rollguard", "image name without the tag")
	flag.StringVar(&tarOut, "tar", "", "write a `docker save` tarball here (docker/podman load, kind load image-archive, crane push)")
	flag.StringVar(&layoutOut, "oci-layout", "", "write an OCI image layout directory here (skopeo copy oci:DIR, crane push)")
	flag.Parse()
	if err := run(s, repo, created, tarOut, layoutOut); err != nil {
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
}

func run(s Spec, repo, created, tarOut, layoutOut string) error {
	if created == "" {
		created = os.Getenv("SOURCE_DATE_EPOCH")
	}
	s.Created = time.Now()
	if created != "" {
		t, err := time.Parse(time.RFC3339, created)
		if err != nil {
			sec, err2 := strconv.ParseInt(created, 10, 64)
			if err2 != nil {
				return fmt.Errorf("-created %q: neither RFC 3339 nor Unix seconds", created)
			}
			t = time.Unix(sec, 0)
		}
		s.Created = t
	}
	ref, err := name.NewTag(repo + ":" + s.Version)
	if err != nil {
		return err
	}
	img, err := Build(s)
	if err != nil {
		return err
	}
	if tarOut != "" {
		if err := tarball.WriteToFile(tarOut, ref, img); err != nil {
			return fmt.Errorf("write %s: %w", tarOut, err)
		}
	}
	if layoutOut != "" {
		if err := os.RemoveAll(layoutOut); err != nil {
			return err
		}
		p, err := layout.Write(layoutOut, empty.Index)
		if err != nil {
			return fmt.Errorf("write %s: %w", layoutOut, err)
		}
		if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": s.Version,
			"io.containerd.image.name":          ref.Name(),
		})); err != nil {
			return fmt.Errorf("write %s: %w", layoutOut, err)
		}
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s@%s\n", ref.Name(), d)
	return nil
}
