package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestImage builds rollguard as `make image` does, writes the image as a
// tarball and as an OCI layout, reads both back with go-containerregistry's
// readers and checks what a container runtime will do with it: the
// entrypoint is a static binary that runs, as the non-root user, with the
// listeners' ports exposed.
func TestImage(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "rollguard")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=v9.8.7-test", "-o", bin, "./cmd/rollguard")
	build.Dir = "../.."
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build rollguard: %v\n%s", err, out)
	}
	created := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	tarOut, layoutOut := filepath.Join(dir, "image.tar"), filepath.Join(dir, "oci")
	spec := Spec{Binary: bin, Arch: runtime.GOARCH, Version: "v9.8.7-test", Revision: "abc123", Source: "https://github.com/rollguard/rollguard", Created: created}
	if _, err := os.Stat(CACerts); err == nil {
		spec.CACerts = CACerts
	}
	if err := run(spec, "ghcr.io/rollguard/rollguard", created.Format(time.RFC3339), tarOut, layoutOut); err != nil {
		t.Fatal(err)
	}

	tag, _ := name.NewTag("ghcr.io/rollguard/rollguard:v9.8.7-test")
	fromTar, err := tarball.ImageFromPath(tarOut, &tag)
	if err != nil {
		t.Fatalf("the tarball does not load under its tag: %v", err)
	}
	idx, err := layout.ImageIndexFromPath(layoutOut)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "v9.8.7-test" {
		t.Fatalf("OCI layout index: %+v (%v)", im, err)
	}
	fromLayout, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	// A `docker save` tarball keeps the config and layers but no manifest
	// (readers make a Docker one), so the two agree on the config's digest.
	c1, _ := fromTar.ConfigName()
	c2, _ := fromLayout.ConfigName()
	if c1 != c2 {
		t.Fatalf("tarball holds the config %s, layout %s", c1, c2)
	}
	// The same inputs give the same image.
	again, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := fromLayout.Digest()
	if d3, _ := again.Digest(); d3 != d1 {
		t.Fatalf("a second build of the same inputs is %s, the first %s", d3, d1)
	}

	for _, img := range []v1.Image{fromTar, fromLayout} {
		checkConfig(t, img)
	}
	if m, err := fromLayout.Manifest(); err != nil || m.MediaType != "application/vnd.oci.image.manifest.v1+json" ||
		len(m.Layers) != 1 || m.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
		t.Errorf("manifest %+v (%v), want an OCI manifest with one OCI layer", m, err)
	}
	root := extract(t, fromLayout, filepath.Join(dir, "rootfs"))
	entry := filepath.Join(root, Entrypoint)
	fi, err := os.Stat(entry)
	if err != nil {
		t.Fatalf("no binary at the entrypoint: %v", err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Fatalf("%s has mode %o", Entrypoint, fi.Mode().Perm())
	}
	// On an empty base there is no dynamic loader: the binary must be static.
	f, err := elf.Open(entry)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatalf("%s asks for a dynamic loader, which the image lacks", Entrypoint)
		}
	}
	f.Close()
	out, err := exec.Command(entry, "version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "rollguard v9.8.7-test" {
		t.Fatalf("the image's binary says %q (%v)", out, err)
	}

	// Inside the image's own file system, as its user: what a runtime does.
	if os.Geteuid() != 0 {
		t.Log("not root: skipped running the binary chrooted into the image as 65532")
		return
	}
	cmd := exec.Command(Entrypoint, "version")
	cmd.Dir = "/"
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
	if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "rollguard v9.8.7-test" {
		t.Fatalf("in the image as 65532, the binary says %q (%v)", out, err)
	}
	runDaemon(t, root)
}

// runDaemon runs `rollguard run` chrooted into the image's file system as
// 65532, with the image's working directory and environment, an embedded
// NATS server and storage under the user's home, until /-/ready says it is
// ready; then it stops it with SIGTERM and expects a clean exit.
func runDaemon(t *testing.T, root string) {
	cfg := `global:
  evaluation_interval: 10s
nats:
  embedded: {port: -1}
otlp:
  http_listen_address: "` + freeAddr(t) + `"
  grpc_listen_address: ""
guards:
  - name: checkout
    service: checkout
    signals:
      - name: errors
`
	if err := os.MkdirAll(filepath.Join(root, "etc/rollguard"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/rollguard/rollguard.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	var out bytes.Buffer
	// The image's own entrypoint, command, user and working directory.
	cmd := exec.Command(Entrypoint, append(slices.Clone(Cmd), "--web.listen-address="+addr)...)
	cmd.Dir = Home
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + Home}
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("rollguard run in the image exited before it was ready: %v\n%s", err, out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			t.Fatalf("rollguard run in the image was not ready within 2 min:\n%s", out.String())
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("rollguard run in the image stopped with %v:\n%s", err, out.String())
		}
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatalf("rollguard run in the image did not stop within 1 min of SIGTERM:\n%s", out.String())
	}
	if _, err := os.Stat(filepath.Join(root, Home, "data")); err != nil {
		t.Errorf("no storage under the working directory %s: %v", Home, err)
	}
}

func checkConfig(t *testing.T, img v1.Image) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532 (not root)", c.User)
	}
	if !slices.Equal(c.Entrypoint, []string{"/usr/local/bin/rollguard"}) || !slices.Equal(c.Cmd, Cmd) {
		t.Errorf("entrypoint %q, command %q", c.Entrypoint, c.Cmd)
	}
	for _, p := range []string{"4317/tcp", "4318/tcp", "9469/tcp"} {
		if _, ok := c.ExposedPorts[p]; !ok {
			t.Errorf("port %s not exposed: %v", p, c.ExposedPorts)
		}
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.version":  "v9.8.7-test",
		"org.opencontainers.image.revision": "abc123",
		"org.opencontainers.image.source":   "https://github.com/rollguard/rollguard",
		"org.opencontainers.image.created":  "2026-12-01T12:00:00Z",
	} {
		if c.Labels[k] != want {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], want)
		}
	}
}

// extract unpacks img's file system under dir, keeping modes, and returns dir.
func extract(t *testing.T, img v1.Image, dir string) string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return dir
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			mode := os.FileMode(h.Mode).Perm()
			if h.Mode&0o1000 != 0 {
				mode |= os.ModeSticky
			}
			if err := os.Chmod(p, mode); err != nil {
				t.Fatal(err)
			}
			os.Lchown(p, h.Uid, h.Gid)
		case tar.TypeReg:
			os.MkdirAll(filepath.Dir(p), 0o755)
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode).Perm())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			f.Close()
		default:
			t.Fatalf("unexpected entry %s of type %c", h.Name, h.Typeflag)
		}
	}
}

// TestDockerfile: the Dockerfile builds the image `make image` builds, so
// the facts a runtime sees agree: entrypoint, user, ports, command.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, want := range []string{
		"CGO_ENABLED=0",
		"-trimpath",
		"COPY --from=build /out/rollguard " + Entrypoint + "\n",
		"USER " + User + "\n",
		"WORKDIR " + Home + "\n",
		"EXPOSE 4317 4318 9469\n",
		`ENTRYPOINT ["` + Entrypoint + `"]`,
		`CMD ["` + strings.Join(Cmd, `", "`) + `"]`,
		"FROM gcr.io/distroless/static-debian12:nonroot\n",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	for _, p := range Ports {
		if !strings.Contains(df, strings.TrimSuffix(p, "/tcp")) {
			t.Errorf("Dockerfile does not expose %s", p)
		}
	}
}

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
