package actuator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/rollguard/rollguard/actions/wire"
)

// Modes of the flagd driver.
const (
	// FlagdOffVariant makes the "off" variant (or else the variant whose
	// value is false) the default and drops the targeting rules, so every
	// evaluation gets it.
	FlagdOffVariant = "off-variant"
	// FlagdDisabled sets the flag's state to DISABLED: flagd then answers
	// with the application's own default for the flag.
	FlagdDisabled = "disabled"
)

// Flagd is a driver that kills a flag in a flagd flag-definition file
// (https://flagd.dev/reference/flag-definitions/), which flagd watches. Only
// the killed flag's fields change; other flags and unknown fields are kept
// (keys come out sorted and indented). The file is replaced atomically.
type Flagd struct {
	file, mode string
	mu         sync.Mutex // one edit at a time
}

// NewFlagd edits file in mode (empty: FlagdOffVariant).
func NewFlagd(file, mode string) (*Flagd, error) {
	if file == "" {
		return nil, errors.New("flagd driver: no flag-definition file")
	}
	switch mode {
	case "":
		mode = FlagdOffVariant
	case FlagdOffVariant, FlagdDisabled:
	default:
		return nil, fmt.Errorf("flagd driver: mode %q is neither %s nor %s", mode, FlagdOffVariant, FlagdDisabled)
	}
	return &Flagd{file: file, mode: mode}, nil
}

// Name is "flagd".
func (f *Flagd) Name() string { return "flagd" }

// Act turns the command's flag off. A flag that is already off is ok.
func (f *Flagd) Act(_ context.Context, c Command) (string, error) {
	if c.Data.Action != wire.ActionFlagKill {
		return "", errors.New("the flagd driver handles flag_kill only")
	}
	name := c.Data.Target.Flag
	if name == "" {
		return "", errors.New("the command names no flag")
	}
	if p := c.Data.Target.Percent; p != nil && *p != 0 {
		return "", fmt.Errorf("the flagd driver turns flags fully off; percent %d is not supported", *p)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := os.ReadFile(f.file)
	if err != nil {
		return "", fmt.Errorf("read flag definitions: %w", err)
	}
	out, detail, err := killFlag(b, name, f.mode)
	if err != nil {
		return "", fmt.Errorf("%s: %w", f.file, err)
	}
	if out == nil {
		return fmt.Sprintf("flag %q was already off in %s", name, f.file), nil
	}
	if err := writeAtomic(f.file, out); err != nil {
		return "", fmt.Errorf("write flag definitions: %w", err)
	}
	return detail + " in " + f.file, nil
}

// killFlag returns the definitions with flag name off, or nil when it was
// already off.
func killFlag(doc []byte, name, mode string) (out []byte, detail string, err error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(doc, &top); err != nil {
		return nil, "", fmt.Errorf("not a flag-definition document: %w", err)
	}
	var flags map[string]json.RawMessage
	if err := json.Unmarshal(top["flags"], &flags); err != nil || flags == nil {
		return nil, "", errors.New(`no "flags" object`)
	}
	raw, ok := flags[name]
	if !ok {
		return nil, "", fmt.Errorf("unknown flag %q (the file defines %s)", name, flagNames(flags))
	}
	var flag map[string]json.RawMessage
	if err := json.Unmarshal(raw, &flag); err != nil || flag == nil {
		return nil, "", fmt.Errorf("flag %q is not an object", name)
	}

	switch mode {
	case FlagdDisabled:
		var state string
		_ = json.Unmarshal(flag["state"], &state)
		if state == "DISABLED" {
			return nil, "", nil
		}
		flag["state"] = json.RawMessage(`"DISABLED"`)
		detail = fmt.Sprintf("flag %q disabled", name)
	default:
		off, err := offVariant(flag)
		if err != nil {
			return nil, "", fmt.Errorf("flag %q: %w", name, err)
		}
		var def string
		_ = json.Unmarshal(flag["defaultVariant"], &def)
		if _, targeted := flag["targeting"]; def == off && !targeted {
			return nil, "", nil
		}
		flag["defaultVariant"], _ = json.Marshal(off)
		delete(flag, "targeting")
		detail = fmt.Sprintf("flag %q set to variant %q for everyone", name, off)
	}

	if flags[name], err = json.Marshal(flag); err != nil {
		return nil, "", err
	}
	if top["flags"], err = json.Marshal(flags); err != nil {
		return nil, "", err
	}
	if out, err = json.MarshalIndent(top, "", "  "); err != nil {
		return nil, "", err
	}
	return append(out, '\n'), detail, nil
}

// offVariant is the variant named "off", or else the one whose value is false.
func offVariant(flag map[string]json.RawMessage) (string, error) {
	var variants map[string]json.RawMessage
	if err := json.Unmarshal(flag["variants"], &variants); err != nil || variants == nil {
		return "", errors.New(`no "variants" object`)
	}
	if _, ok := variants["off"]; ok {
		return "off", nil
	}
	var names []string
	for n, v := range variants {
		if string(bytes.TrimSpace(v)) == "false" {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "", errors.New(`no off variant: none is named "off" and none has the value false`)
	}
	sort.Strings(names) // several false variants: choose the same one every time
	return names[0], nil
}

func flagNames(flags map[string]json.RawMessage) string {
	names := make([]string, 0, len(flags))
	for n := range flags {
		names = append(names, fmt.Sprintf("%q", n))
	}
	sort.Strings(names)
	if len(names) > 10 {
		names = append(names[:10], "…")
	}
	if len(names) == 0 {
		return "no flags"
	}
	return fmt.Sprint(names)
}

// writeAtomic replaces file with b: a reader (flagd) sees the old content
// or the new, never a part, even if the machine stops.
func writeAtomic(file string, b []byte) (err error) {
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(file); err == nil {
		mode = fi.Mode().Perm()
	}
	dir := filepath.Dir(file)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(file)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(b); err != nil {
		return err
	}
	if err = tmp.Chmod(mode); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), file); err != nil {
		return err
	}
	// The rename itself must reach the disk too.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
