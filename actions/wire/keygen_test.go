package wire

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGenerateKeyFiles: the seed written loads with the loader the daemon
// uses (LoadSigner, for playbook.signing.seed_file), its public key is the
// one in the public key file, and a signature by it verifies with that file
// as an actuator reads it.
func TestGenerateKeyFiles(t *testing.T) {
	dir := t.TempDir()
	seedFile, pubFile := filepath.Join(dir, "seed.nk"), filepath.Join(dir, "seed.pub")
	pub, err := GenerateKeyFiles(seedFile, pubFile, false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(pub, "U") {
		t.Fatalf("public key %q is not a user nkey", pub)
	}
	checkMode(t, seedFile, 0o600)
	checkMode(t, pubFile, 0o644)
	seed, _ := os.ReadFile(seedFile)
	if !strings.HasPrefix(string(seed), "SU") {
		t.Fatalf("seed file holds %.2q…, not a user seed", seed)
	}
	s, err := LoadSigner(seedFile, filepath.Join(dir, "unused"))
	if err != nil {
		t.Fatalf("the daemon's loader refuses the seed: %v", err)
	}
	if s.PublicKey() != pub {
		t.Fatalf("seed's public key %s, GenerateKeyFiles returned %s", s.PublicKey(), pub)
	}
	keys, err := ReadKeyFiles(pubFile)
	if err != nil || len(keys) != 1 || keys[0] != pub {
		t.Fatalf("public key file: %v %v, want [%s]", keys, err, pub)
	}
	v, err := NewVerifier(keys...)
	if err != nil {
		t.Fatal(err)
	}
	m := &Message{ID: "x", Data: []byte("kill new-checkout-flow")}
	if err := s.Sign(m); err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(m.Data, func(k string) string { return m.Header[k] }); err != nil {
		t.Fatalf("a signature by the seed does not verify with the public key file: %v", err)
	}
	// A second key is a different key.
	pub2, err := GenerateKeyFiles(filepath.Join(dir, "b.nk"), filepath.Join(dir, "b.pub"), false)
	if err != nil || pub2 == pub {
		t.Fatalf("second key %s (%v), first %s", pub2, err, pub)
	}
}

// TestGenerateKeyFilesRefusesOverwrite: an existing seed or public key file
// is left as it was, and neither file is written, unless force is set.
func TestGenerateKeyFilesRefusesOverwrite(t *testing.T) {
	for _, existing := range []string{"seed.nk", "seed.pub"} {
		t.Run(existing, func(t *testing.T) {
			dir := t.TempDir()
			seedFile, pubFile := filepath.Join(dir, "seed.nk"), filepath.Join(dir, "seed.pub")
			old := filepath.Join(dir, existing)
			if err := os.WriteFile(old, []byte("old\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := GenerateKeyFiles(seedFile, pubFile, false)
			if !errors.Is(err, ErrKeyFileExists) || !strings.Contains(err.Error(), old) || !strings.Contains(err.Error(), "--force") {
				t.Fatalf("got %v, want ErrKeyFileExists naming %s and --force", err, old)
			}
			if b, _ := os.ReadFile(old); string(b) != "old\n" {
				t.Fatalf("%s was changed to %q", old, b)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Fatalf("a refusal wrote files: %v", entries)
			}
		})
	}
}

// TestGenerateKeyFilesForce: with force, both files are replaced by a new
// key, and the seed is 0600 even where the old file was readable by all.
func TestGenerateKeyFilesForce(t *testing.T) {
	dir := t.TempDir()
	seedFile, pubFile := filepath.Join(dir, "seed.nk"), filepath.Join(dir, "seed.pub")
	first, err := GenerateKeyFiles(seedFile, pubFile, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(seedFile, 0o644); err != nil {
		t.Fatal(err)
	}
	second, err := GenerateKeyFiles(seedFile, pubFile, true)
	if err != nil {
		t.Fatal(err)
	}
	if second == first {
		t.Fatal("--force kept the old key")
	}
	checkMode(t, seedFile, 0o600)
	checkMode(t, pubFile, 0o644)
	s, err := LoadSigner(seedFile, "")
	if err != nil || s.PublicKey() != second {
		t.Fatalf("replaced seed loads as %v (%v), want %s", s, err, second)
	}
	if keys, _ := ReadKeyFiles(pubFile); len(keys) != 1 || keys[0] != second {
		t.Fatalf("public key file holds %v, want %s", keys, second)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

func TestGenerateKeyFilesSamePath(t *testing.T) {
	f := filepath.Join(t.TempDir(), "key")
	if _, err := GenerateKeyFiles(f, f, true); err == nil {
		t.Fatal("wrote the seed and the public key to one file")
	}
	if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s written: %v", f, err)
	}
}

func checkMode(t *testing.T, file string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Fatalf("%s has mode %o, want %o", file, got, want)
	}
}
