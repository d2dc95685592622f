package wire

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nkeys"
)

// Signer signs messages with an ed25519 nkey, and keys their Nats-Msg-Id
// with a secret derived from the same seed. The signature covers the
// exact message data, so a receiver verifies the bytes it received.
type Signer struct {
	kp  nkeys.KeyPair
	pub string
	// own verifies this signer's signatures (on a duplicate publish).
	own *Verifier
	// idKey keys message ids (MsgID); it is derived from the seed, so
	// whoever holds the seed derives it and nobody else can.
	idKey []byte
}

// msgIDDomain separates the message-id key from any other use of the
// seed: the key is HMAC-SHA256(seed, msgIDDomain).
const msgIDDomain = "rollguard/nats-msg-id/v1"

// NewSigner builds a signer from an nkey user seed ("SU…").
func NewSigner(seed []byte) (*Signer, error) {
	seed = []byte(strings.TrimSpace(string(seed)))
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	_, raw, err := nkeys.DecodeSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	mac := hmac.New(sha256.New, raw)
	mac.Write([]byte(msgIDDomain))
	own, err := NewVerifier(pub)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return &Signer{kp: kp, pub: pub, own: own, idKey: mac.Sum(nil)}, nil
}

// NewEphemeralSigner makes a signer with a fresh key that lives as long
// as the process: an actuator started without a seed file signs its
// results with one.
func NewEphemeralSigner() (*Signer, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("create signing key: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("create signing key: %w", err)
	}
	return NewSigner(seed)
}

// MsgID is the Nats-Msg-Id under which the message with the semantic id
// id is published: hex HMAC-SHA256 of id, truncated to 128 bits, keyed by
// the seed. It is the same for every retry and every replica that shares
// the seed, so JetStream still drops a second copy; and nobody without
// the seed can compute it, so nobody can publish junk under it first and
// have the genuine message dropped as its duplicate.
func (s *Signer) MsgID(id string) string {
	mac := hmac.New(sha256.New, s.idKey)
	mac.Write([]byte(id))
	return hex.EncodeToString(mac.Sum(nil)[:16])
}

// Signs reports whether data carries a valid signature by this signer,
// as the headers that get returns say.
func (s *Signer) Signs(data []byte, get func(string) string) bool {
	return s.own.Verify(data, get) == nil
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

// Verifier checks the signatures of commands (in an actuator) or of
// results (in rollguard) against trusted public keys.
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

// ReadKeyFiles reads public keys from files, one key per non-empty line
// (like rollguard's <storage.path>/signing.pub, or a list of actuators'
// keys). It checks nothing about the keys; NewVerifier does.
func ReadKeyFiles(files ...string) ([]string, error) {
	var keys []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("key file: %w", err)
		}
		n := 0
		for line := range strings.Lines(string(b)) {
			if line = strings.TrimSpace(line); line != "" {
				keys = append(keys, line)
				n++
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("key file %s holds no key", f)
		}
	}
	return keys, nil
}
