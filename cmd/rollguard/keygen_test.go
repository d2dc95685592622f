package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rollguard/rollguard/actions/wire"
)

// TestKeygen: `rollguard keygen` writes a seed the daemon's loader accepts,
// the public key beside it, and prints the kubectl command for the Secret
// that deploy/kubernetes/rollguard-central.yaml mounts; a second run
// refuses to overwrite, and --force replaces the key.
func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	seedFile := filepath.Join(dir, "seed.nk")
	var out, errb bytes.Buffer
	if code := rollguard([]string{"keygen", "--seed-file", seedFile}, &out, &errb); code != 0 {
		t.Fatalf("keygen exited %d: %s", code, errb.String())
	}
	s, err := wire.LoadSigner(seedFile, "")
	if err != nil {
		t.Fatal(err)
	}
	pubFile := filepath.Join(dir, "seed.pub")
	if b, err := os.ReadFile(pubFile); err != nil || strings.TrimSpace(string(b)) != s.PublicKey() {
		t.Fatalf("%s holds %q (%v), want %s", pubFile, b, err, s.PublicKey())
	}
	manifest, err := os.ReadFile("../../deploy/kubernetes/rollguard-central.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"kubectl -n rollguard create secret generic rollguard-signing-key --from-file=seed.nk=" + seedFile,
		s.PublicKey(),
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	// The Secret name and key are the ones the manifest mounts and reads.
	for _, want := range []string{"secretName: rollguard-signing-key", "mountPath: /etc/rollguard/signing", "seed_file: /etc/rollguard/signing/seed.nk"} {
		if !strings.Contains(string(manifest), want) {
			t.Errorf("rollguard-central.yaml no longer has %q: keygen's kubectl command is out of date", want)
		}
	}

	out.Reset()
	errb.Reset()
	if code := rollguard([]string{"keygen", "--seed-file", seedFile}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "--force") {
		t.Fatalf("second keygen exited %d: %q, want 1 and a hint at --force", code, errb.String())
	}
	if s2, err := wire.LoadSigner(seedFile, ""); err != nil || s2.PublicKey() != s.PublicKey() {
		t.Fatalf("a refused keygen changed the key: %v", err)
	}
	if code := rollguard([]string{"keygen", "--seed-file", seedFile, "--force"}, &out, &errb); code != 0 {
		t.Fatalf("keygen --force exited %d: %s", code, errb.String())
	}
	if s3, err := wire.LoadSigner(seedFile, ""); err != nil || s3.PublicKey() == s.PublicKey() {
		t.Fatalf("keygen --force kept the key (%v)", err)
	}
}

// TestShellQuote: the printed kubectl command survives paths a shell would
// split or expand; plain ones are printed as they are.
func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/etc/rollguard/seed.nk": "/etc/rollguard/seed.nk",
		"my keys/seed.nk":        "'my keys/seed.nk'",
		"it's/seed.nk":           `'it'\''s/seed.nk'`,
		"$HOME/seed.nk":          "'$HOME/seed.nk'",
		"":                       "''",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
		// The shell gives back the original.
		out, err := exec.Command("sh", "-c", "printf %s "+shellQuote(in)).Output()
		if err != nil || string(out) != in {
			t.Errorf("sh reads %s as %q (%v), want %q", shellQuote(in), out, err, in)
		}
	}
}
