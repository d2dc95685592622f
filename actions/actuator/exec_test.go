package actuator

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/actions/wire"
)

// script writes a /bin/sh script into a temporary directory; it is run as
// an argument of /bin/sh, so it need not be executable.
func script(t *testing.T, body string) (dir, file string) {
	t.Helper()
	dir = t.TempDir()
	file = filepath.Join(dir, "act.sh")
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, file
}

func decoded(t *testing.T, b []byte) Command {
	t.Helper()
	c, err := DecodeCommand("rollguard.cmd."+actionOf(t, b)+".checkout", b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func actionOf(t *testing.T, b []byte) string {
	t.Helper()
	for _, a := range []string{wire.ActionFlagKill, wire.ActionRollback, wire.ActionDataAudit} {
		if strings.Contains(string(b), `"action":"`+a+`"`) {
			return a
		}
	}
	t.Fatal("no action")
	return ""
}

// TestExecOK: the program gets the command on stdin and its fields in the
// environment, keeps the inherited environment, and its last line of
// output is the detail.
func TestExecOK(t *testing.T) {
	t.Setenv("ACTUATOR_TEST_INHERITED", "kept")
	dir, file := script(t, `cat > "$OUT/stdin"
env | grep -E '^(ROLLGUARD_|ACTUATOR_TEST_)' | sort > "$OUT/env"
echo "calling the deploy tool"
echo "rolled back to $ROLLGUARD_VERSION"
echo
`)
	t.Setenv("OUT", dir)
	start, end := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC), time.Date(2026, 1, 2, 3, 10, 0, 0, time.UTC)
	raw := command(t, "d-1/rollback/v1", wire.ActionRollback, "checkout", "", func(d *wire.CommandData) {
		d.Target = wire.Target{Version: "v1", Commit: "abc123", Strategy: wire.StrategyRedeploy, WindowStart: &start, WindowEnd: &end}
	})
	x, err := NewExec([]string{"/bin/sh", file}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	detail, err := x.Act(t.Context(), decoded(t, raw))
	if err != nil || detail != "rolled back to v1" {
		t.Fatalf("detail %q, error %v", detail, err)
	}
	if stdin, _ := os.ReadFile(filepath.Join(dir, "stdin")); string(stdin) != string(raw) {
		t.Errorf("stdin %q, want the command's CloudEvent", stdin)
	}
	env, _ := os.ReadFile(filepath.Join(dir, "env"))
	want := `ACTUATOR_TEST_INHERITED=kept
ROLLGUARD_ACTION=rollback
ROLLGUARD_COMMAND_ID=d-1/rollback/v1
ROLLGUARD_COMMIT=abc123
ROLLGUARD_DRY_RUN=false
ROLLGUARD_FLAG=
ROLLGUARD_INCIDENT_ID=inc-d-1
ROLLGUARD_PERCENT=
ROLLGUARD_SERVICE=checkout
ROLLGUARD_STRATEGY=redeploy
ROLLGUARD_VERSION=v1
ROLLGUARD_WINDOW_END=2026-01-02T03:10:00Z
ROLLGUARD_WINDOW_START=2026-01-02T03:00:00Z
`
	// The inherited environment may hold other ROLLGUARD_ variables (make
	// test sets ROLLGUARD_PROMETHEUS): compare the keys the driver sets.
	var got strings.Builder
	for _, line := range strings.SplitAfter(string(env), "\n") {
		if k, _, ok := strings.Cut(line, "="); ok && strings.Contains(want, "\n"+k+"=") || strings.HasPrefix(want, k+"=") {
			got.WriteString(line)
		}
	}
	if got.String() != want {
		t.Errorf("environment:\n%s\nwant:\n%s", env, want)
	}
}

// TestExecFlagEnv: a flag kill's flag and percent reach the program.
func TestExecFlagEnv(t *testing.T) {
	_, file := script(t, `echo "$ROLLGUARD_FLAG=$ROLLGUARD_PERCENT"`)
	x, err := NewExec([]string{"/bin/sh", file}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	raw := command(t, "d-1/flag_kill/new-checkout", wire.ActionFlagKill, "checkout", "new-checkout", nil)
	if detail, err := x.Act(t.Context(), decoded(t, raw)); err != nil || detail != "new-checkout=0" {
		t.Errorf("detail %q, error %v", detail, err)
	}
}

// TestExecFailed: a non-zero exit is a failure with the end of stderr; a
// program that does not finish in time is killed and fails; a program that
// does not exist fails.
func TestExecFailed(t *testing.T) {
	raw := command(t, "d-1/flag_kill/new-checkout", wire.ActionFlagKill, "checkout", "new-checkout", nil)
	for _, tc := range []struct {
		name, body string
		argv       []string
		want       []string
	}{
		{"exit status", "echo working\necho 'flag service: 403 forbidden' >&2\nexit 3\n", nil,
			[]string{"exit status 3", "flag service: 403 forbidden"}},
		{"long stderr", "i=0; while [ $i -lt 2000 ]; do echo \"line $i\" >&2; i=$((i+1)); done; exit 1\n", nil,
			[]string{"exit status 1", "line 1999"}},
		{"timeout", "echo started >&2\nexec sleep 30\n", nil, []string{"timed out after 300ms", "started"}},
		// The shell's child keeps stderr open after the shell is killed.
		{"timeout with child", "echo started >&2\nsleep 5\necho never\n", nil, []string{"timed out after 300ms", "started"}},
		{"not found", "", []string{"/nonexistent/actuate"}, []string{"/nonexistent/actuate", "no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			argv := tc.argv
			if argv == nil {
				_, file := script(t, tc.body)
				argv = []string{"/bin/sh", file}
			}
			timeout := 5 * time.Second
			if strings.HasPrefix(tc.name, "timeout") {
				timeout = 300 * time.Millisecond
			}
			x, err := NewExec(argv, timeout)
			if err != nil {
				t.Fatal(err)
			}
			begin := time.Now()
			detail, err := x.Act(t.Context(), decoded(t, raw))
			if err == nil {
				t.Fatalf("no error; detail %q", detail)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q, want it to contain %q", err, w)
				}
			}
			if len(err.Error()) > outputTail+200 {
				t.Errorf("error of %d bytes: the output is not cut", len(err.Error()))
			}
			if d := time.Since(begin); d > 4*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
	if _, err := NewExec(nil, 0); err == nil {
		t.Error("an empty command was accepted")
	}
}
