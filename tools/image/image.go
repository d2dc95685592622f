// Command image builds rollguard's container image without a Docker
// daemon: one layer holding the static binary, a non-root user and the
// few files a Go program reads (CA certificates, passwd), on an empty
// base, written as a `docker save` tarball and as an OCI image layout.
// `make image` runs it; the Dockerfile builds the same image with Docker.
//
// It lives in its own module so that go-containerregistry stays out of
// rollguard's dependencies.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's fixed facts, shared with the Dockerfile.
const (
	Entrypoint = "/usr/local/bin/rollguard"
	// User is distroless's "nonroot": the Dockerfile's base runs as it too.
	User    = "65532:65532"
	Home    = "/home/nonroot"
	CACerts = "/etc/ssl/certs/ca-certificates.crt"
)

// Ports are the listeners' defaults: OTLP/gRPC, OTLP/HTTP, web.
var Ports = []string{"4317/tcp", "4318/tcp", "9469/tcp"}

// Cmd is the default command: the daemon with the configuration where the
// manifests and the chart mount it.
var Cmd = []string{"run", "--config.file=/etc/rollguard/rollguard.yml"}

// Spec is what varies between builds.
type Spec struct {
	Binary   string    // the static rollguard binary for OS/Arch
	CACerts  string    // a CA bundle to include at CACerts; "" for none
	Arch     string    // GOARCH of Binary
	Version  string    // rollguard's version, also the tag
	Revision string    // the commit
	Source   string    // the repository's URL
	Created  time.Time // the commit's time, so a build is reproducible
}

// Build assembles the image.
func Build(s Spec) (v1.Image, error) {
	if s.Arch == "" || s.Version == "" {
		return nil, errors.New("image: arch and version are needed")
	}
	created := s.Created.UTC().Truncate(time.Second)
	layerTar, err := rootfs(s, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "make image (tools/image)", Comment: "rollguard " + s.Version},
	})
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", s.Arch
	cf.Created = v1.Time{Time: created}
	ports := map[string]struct{}{}
	for _, p := range Ports {
		ports[p] = struct{}{}
	}
	cf.Config = v1.Config{
		User:         User,
		Entrypoint:   []string{Entrypoint},
		Cmd:          Cmd,
		WorkingDir:   Home,
		Env:          []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + Home},
		ExposedPorts: ports,
		Labels:       Labels(s),
	}
	return mutate.ConfigFile(img, cf)
}

// Labels are the org.opencontainers.image annotations both builds set.
func Labels(s Spec) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       "rollguard",
		"org.opencontainers.image.description": "Telemetry guardrail daemon: compares a deployment's new version against its baseline and kills the flag when it is measurably worse.",
		"org.opencontainers.image.version":     s.Version,
		"org.opencontainers.image.created":     s.Created.UTC().Format(time.RFC3339),
	}
	if s.Revision != "" {
		l["org.opencontainers.image.revision"] = s.Revision
	}
	if s.Source != "" {
		l["org.opencontainers.image.source"] = s.Source
	}
	return l
}

// rootfs is the layer: the binary, the non-root user's passwd and group
// entries and home, a writable /tmp and the CA bundle. Every entry carries
// the time created, so the same inputs give the same digest.
func rootfs(s Spec, created time.Time) ([]byte, error) {
	bin, err := os.ReadFile(s.Binary)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64, uid int) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: uid, ModTime: created, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: created, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	steps := []func() error{
		func() error { return dir("etc", 0o755, 0) },
		func() error {
			return file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"))
		},
		func() error { return file("etc/group", 0o644, []byte("root:x:0:\nnonroot:x:65532:\n")) },
		func() error { return dir("home", 0o755, 0) },
		func() error { return dir("home/nonroot", 0o700, 65532) },
		func() error { return dir("tmp", 0o1777, 0) },
		func() error { return dir("usr", 0o755, 0) },
		func() error { return dir("usr/local", 0o755, 0) },
		func() error { return dir("usr/local/bin", 0o755, 0) },
		func() error { return file(Entrypoint[1:], 0o755, bin) },
	}
	if s.CACerts != "" {
		certs, err := os.ReadFile(s.CACerts)
		if err != nil {
			return nil, fmt.Errorf("image: CA certificates: %w", err)
		}
		steps = append(steps,
			func() error { return dir("etc/ssl", 0o755, 0) },
			func() error { return dir("etc/ssl/certs", 0o755, 0) },
			func() error { return file(CACerts[1:], 0o644, certs) })
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, fmt.Errorf("image: layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	return buf.Bytes(), nil
}
