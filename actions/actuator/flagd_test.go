package actuator

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/rollguard/rollguard/actions/wire"
)

// TestFlagd: each mode turns the flag off and changes nothing else; a flag
// whose off variant is not named "off" is found by its false value; a flag
// already off is ok and the file is left alone; an unknown flag, a flag
// without an off variant, another action or a partial percent fail.
func TestFlagd(t *testing.T) {
	for _, tc := range []struct {
		name, mode, flag string
		edit             func(c *wire.CommandData)
		change           func(flag map[string]any) // nil: the file must not change
		detail, err      string
	}{
		{"off-variant", "", "new-checkout", nil, func(f map[string]any) {
			f["defaultVariant"] = "off"
			delete(f, "targeting")
		}, `flag "new-checkout" set to variant "off" for everyone`, ""},
		{"off-variant by value", FlagdOffVariant, "dark-mode", nil, func(f map[string]any) {
			f["defaultVariant"] = "disabled"
			delete(f, "targeting")
		}, `flag "dark-mode" set to variant "disabled" for everyone`, ""},
		{"disabled", FlagdDisabled, "new-checkout", nil, func(f map[string]any) {
			f["state"] = "DISABLED"
		}, `flag "new-checkout" disabled`, ""},
		{"already off", FlagdOffVariant, "plain-off", nil, nil, `flag "plain-off" was already off`, ""},
		{"already disabled", FlagdDisabled, "retired", nil, nil, `flag "retired" was already off`, ""},
		{"unknown flag", "", "no-such-flag", nil, nil, "", `unknown flag "no-such-flag" (the file defines ["dark-mode" "new-checkout" "no-off" "plain-off" "retired"])`},
		{"no off variant", "", "no-off", nil, nil, "", `flag "no-off": no off variant`},
		{"not flag_kill", "", "new-checkout", func(c *wire.CommandData) { c.Action = wire.ActionRollback }, nil, "", "the flagd driver handles flag_kill only"},
		{"no flag", "", "", nil, nil, "", "the command names no flag"},
		{"partial percent", "", "new-checkout", func(c *wire.CommandData) { p := 10; c.Target.Percent = &p }, nil, "", "percent 10 is not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "flags.json")
			doc := strings.Replace(flagFile, `    "dark-mode"`, `    "plain-off": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"},
    "retired": {"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
    "no-off": {"state": "ENABLED", "variants": {"blue": "#00f", "red": "#f00"}, "defaultVariant": "blue"},
    "dark-mode"`, 1)
			if err := os.WriteFile(file, []byte(doc), 0o640); err != nil {
				t.Fatal(err)
			}
			fd, err := NewFlagd(file, tc.mode)
			if err != nil {
				t.Fatal(err)
			}
			c := Command{Data: wire.CommandData{Action: wire.ActionFlagKill, Service: "checkout", Target: wire.Target{Flag: tc.flag}}}
			if tc.edit != nil {
				tc.edit(&c.Data)
			}
			detail, err := fd.Act(t.Context(), c)
			switch {
			case tc.err == "" && (err != nil || !strings.HasPrefix(detail, tc.detail)):
				t.Errorf("detail %q, error %v, want %q", detail, err, tc.detail)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("error %v, want it to contain %q", err, tc.err)
			}

			got, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if tc.change == nil {
				if string(got) != doc {
					t.Errorf("the file changed:\n%s", got)
				}
			} else {
				want := flagDoc(t, []byte(doc))
				tc.change(want["flags"].(map[string]any)[tc.flag].(map[string]any))
				if !reflect.DeepEqual(flagDoc(t, got), want) {
					t.Errorf("file after the kill:\n%s", got)
				}
				if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o640 {
					t.Errorf("file mode changed: %v %v", fi.Mode(), err)
				}
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("files left in the directory: %v", entries)
			}
		})
	}
}

// TestFlagdOptions: a mode other than the two is refused at start, and so is no file.
func TestFlagdOptions(t *testing.T) {
	if _, err := NewFlagd("flags.json", "zero"); err == nil || !strings.Contains(err.Error(), `mode "zero"`) {
		t.Errorf("bad mode: %v", err)
	}
	if _, err := NewFlagd("", ""); err == nil {
		t.Error("no file accepted")
	}
	if _, err := NewFlagd("flags.json", FlagdDisabled); err != nil {
		t.Error(err)
	}
}

// TestFlagdBrokenFile: a file that is not a flag-definition document fails
// the action and is left as it was.
func TestFlagdBrokenFile(t *testing.T) {
	for _, doc := range []string{`{"flags": `, `[]`, `{"flags": []}`, `{"flags": {"new-checkout": 3}}`, `{"flags": {"new-checkout": {"variants": 1}}}`} {
		file := filepath.Join(t.TempDir(), "flags.json")
		if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		fd, _ := NewFlagd(file, "")
		c := Command{Data: wire.CommandData{Action: wire.ActionFlagKill, Target: wire.Target{Flag: "new-checkout"}}}
		if _, err := fd.Act(t.Context(), c); err == nil || !strings.Contains(err.Error(), file) {
			t.Errorf("%s: %v", doc, err)
		}
		if got, _ := os.ReadFile(file); string(got) != doc {
			t.Errorf("%s: file changed to %s", doc, got)
		}
	}
	fd, _ := NewFlagd(filepath.Join(t.TempDir(), "missing.json"), "")
	c := Command{Data: wire.CommandData{Action: wire.ActionFlagKill, Target: wire.Target{Flag: "new-checkout"}}}
	if _, err := fd.Act(t.Context(), c); err == nil || !strings.Contains(err.Error(), "read flag definitions") {
		t.Errorf("missing file: %v", err)
	}
}
