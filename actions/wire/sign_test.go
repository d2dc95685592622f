package wire

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSignVerify: a signed message verifies against the signer's key, and
// an unsigned, foreign or altered one is refused for the right reason.
func TestSignVerify(t *testing.T) {
	dir := t.TempDir()
	s, err := LoadSigner("", dir)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(filepath.Join(dir, "signing.pub"))
	if err != nil || strings.TrimSpace(string(pub)) != s.PublicKey() {
		t.Fatalf("signing.pub = %q, %v; want %s", pub, err, s.PublicKey())
	}
	again, err := LoadSigner("", dir)
	if err != nil || again.PublicKey() != s.PublicKey() {
		t.Fatalf("second start: key %v, %v; want the same key %s", again, err, s.PublicKey())
	}
	fromFile, err := LoadSigner(filepath.Join(dir, "signing.nk"), "")
	if err != nil || fromFile.PublicKey() != s.PublicKey() {
		t.Fatalf("seed file: %v, %v", fromFile, err)
	}
	v, err := NewVerifier(" " + s.PublicKey() + "\n")
	if err != nil {
		t.Fatal(err)
	}
	m := Message{Subject: "rollguard.cmd.flag_kill.checkout", ID: "d-1/0/f", Data: []byte(`{"a":1}`)}
	if err := s.Sign(&m); err != nil {
		t.Fatal(err)
	}
	get := func(m Message) func(string) string { return func(k string) string { return m.Header[k] } }
	if err := v.Verify(m.Data, get(m)); err != nil {
		t.Errorf("verify signed: %v", err)
	}
	if err := v.Verify([]byte(`{"a":2}`), get(m)); !errors.Is(err, ErrBadSignature) {
		t.Errorf("verify altered: %v, want %v", err, ErrBadSignature)
	}
	if err := v.Verify(m.Data, get(Message{})); !errors.Is(err, ErrUnsigned) {
		t.Errorf("verify unsigned: %v, want %v", err, ErrUnsigned)
	}
	other, err := LoadSigner("", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	o := Message{Data: m.Data}
	if err := other.Sign(&o); err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(o.Data, get(o)); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("verify foreign key: %v, want %v", err, ErrUnknownKey)
	}
	if _, err := NewVerifier(); err == nil {
		t.Error("a verifier that trusts no key was built")
	}
	if _, err := NewSigner([]byte("not a seed")); err == nil {
		t.Error("a signer was built from garbage")
	}
}

// TestMsgID: the keyed message id is the same for every signer built
// from one seed, differs between seeds and between ids, and is not the
// readable id.
func TestMsgID(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadSigner("", dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadSigner(filepath.Join(dir, "signing.nk"), "")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewEphemeralSigner()
	if err != nil {
		t.Fatal(err)
	}
	const id = "d-1a2b3c/flag_kill/new-flow"
	got := a.MsgID(id)
	if len(got) != 32 || got == id || strings.Contains(got, "d-1a2b3c") {
		t.Errorf("MsgID(%q) = %q, want 32 hex digits unrelated to the id", id, got)
	}
	if again.MsgID(id) != got {
		t.Error("two signers of one seed key the same id differently")
	}
	if other.MsgID(id) == got || a.MsgID(id+"x") == got {
		t.Error("another seed or another id gives the same message id")
	}
}
