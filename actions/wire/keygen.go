package wire

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nats-io/nkeys"
)

// ErrKeyFileExists is returned by GenerateKeyFiles when a file it would
// write is already there and it was not told to overwrite.
var ErrKeyFileExists = errors.New("wire: key file exists")

// GenerateKeyFiles makes a new signing key: it writes its nkey user seed
// ("SU…", the format LoadSigner and NewSigner read) to seedFile with mode
// 0600 and its public key ("U…", what actuators trust with
// --verify.key-file) to publicKeyFile with mode 0644, and returns the
// public key. It refuses to replace either file unless force is set, and
// checks both before writing either, so a refusal leaves nothing half
// done. A replaced file is swapped in whole by a rename.
func GenerateKeyFiles(seedFile, publicKeyFile string, force bool) (string, error) {
	if seedFile == "" || publicKeyFile == "" {
		return "", errors.New("generate signing key: both a seed file and a public key file are needed")
	}
	if sameFile(seedFile, publicKeyFile) {
		return "", fmt.Errorf("generate signing key: the seed file and the public key file are both %s", seedFile)
	}
	if !force {
		for _, f := range []string{seedFile, publicKeyFile} {
			if _, err := os.Lstat(f); err == nil {
				return "", fmt.Errorf("%w: %s (--force replaces it; actuators that trust the old public key then refuse what the new one signs)", ErrKeyFileExists, f)
			} else if !errors.Is(err, os.ErrNotExist) {
				return "", fmt.Errorf("generate signing key: %w", err)
			}
		}
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", fmt.Errorf("generate signing key: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return "", fmt.Errorf("generate signing key: %w", err)
	}
	// Check it with the daemon's own loader before writing anything.
	s, err := NewSigner(seed)
	if err != nil {
		return "", err
	}
	if err := writeFileAtomic(seedFile, append(seed, '\n'), 0o600, force); err != nil {
		return "", fmt.Errorf("write seed: %w", err)
	}
	if err := writeFileAtomic(publicKeyFile, []byte(s.PublicKey()+"\n"), 0o644, force); err != nil {
		return "", fmt.Errorf("write public key: %w", err)
	}
	return s.PublicKey(), nil
}

func sameFile(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// writeFileAtomic writes data with mode perm. To replace file it writes a
// temporary file beside it and renames it over file, so a reader sees the
// old key or the new one, never part of one; otherwise it creates file
// exclusively, which fails if file appeared since the check.
func writeFileAtomic(file string, data []byte, perm os.FileMode, replace bool) error {
	var f *os.File
	var err error
	if replace {
		f, err = os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp*")
	} else {
		f, err = os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%w: %s", ErrKeyFileExists, file)
		}
	}
	if err != nil {
		return err
	}
	name := f.Name()
	if replace {
		defer os.Remove(name) // after a successful rename, nothing is left
	}
	// The umask may have narrowed perm, CreateTemp makes 0600: set it.
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if !replace {
			os.Remove(file)
		}
		return err
	}
	if replace {
		return os.Rename(name, file)
	}
	return nil
}
