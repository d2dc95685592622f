package wire

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nkeys"
)

// Signer signs commands with an ed25519 nkey. The signature covers the
// exact message data, so an actuator verifies the bytes it received.
type Signer struct {
	kp  nkeys.KeyPair
	pub string
}

// NewSigner builds a signer from an nkey user seed ("SU…").
func NewSigner(seed []byte) (*Signer, error) {
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return &Signer{kp: kp, pub: pub}, nil
}

// LoadSigner reads the seed in file; with file empty it uses (and on first
// start creates, mode 0600) dir/signing.nk, and writes the public key to
// dir/signing.pub for actuators to trust.
func LoadSigner(file, dir string) (*Signer, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
		return NewSigner(b)
	}
	file = filepath.Join(dir, "signing.nk")
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return nil, fmt.Errorf("create signing key: %w", err)
		}
		if b, err = kp.Seed(); err != nil {
			return nil, fmt.Errorf("create signing key: %w", err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create signing key: %w", err)
		}
		if err := os.WriteFile(file, append(b, '\n'), 0o600); err != nil {
			return nil, fmt.Errorf("create signing key: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	s, err := NewSigner(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "signing.pub"), []byte(s.pub+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("write public key: %w", err)
	}
	return s, nil
}

// PublicKey is the key id actuators trust.
func (s *Signer) PublicKey() string { return s.pub }

// Sign sets the signature and key headers of m.
func (s *Signer) Sign(m *Message) error {
	sig, err := s.kp.Sign(m.Data)
	if err != nil {
		return fmt.Errorf("sign %s: %w", m.ID, err)
	}
	if m.Header == nil {
		m.Header = map[string]string{}
	}
	m.Header[HeaderSignature] = base64.RawURLEncoding.EncodeToString(sig)
	m.Header[HeaderKey] = s.pub
	return nil
}

// Reasons a signature check fails.
var (
	ErrUnsigned     = errors.New("command is not signed")
	ErrUnknownKey   = errors.New("command is signed by a key this actuator does not trust")
	ErrBadSignature = errors.New("command signature does not match its content")
)

// Verifier checks command signatures against trusted public keys.
type Verifier struct {
	keys map[string]nkeys.KeyPair
}

// NewVerifier trusts the given public nkeys.
func NewVerifier(publicKeys ...string) (*Verifier, error) {
	v := &Verifier{keys: map[string]nkeys.KeyPair{}}
	for _, pk := range publicKeys {
		pk = strings.TrimSpace(pk)
		kp, err := nkeys.FromPublicKey(pk)
		if err != nil {
			return nil, fmt.Errorf("trusted key %q: %w", pk, err)
		}
		v.keys[pk] = kp
	}
	if len(v.keys) == 0 {
		return nil, errors.New("no trusted public key: an actuator must verify commands")
	}
	return v, nil
}

// Verify checks that data was signed, by a trusted key, as the headers say.
// get returns a header's value.
func (v *Verifier) Verify(data []byte, get func(string) string) error {
	sig, key := get(HeaderSignature), get(HeaderKey)
	if sig == "" || key == "" {
		return ErrUnsigned
	}
	kp, ok := v.keys[key]
	if !ok {
		return fmt.Errorf("%w (%s)", ErrUnknownKey, key)
	}
	raw, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if err := kp.Verify(data, raw); err != nil {
		return ErrBadSignature
	}
	return nil
}
