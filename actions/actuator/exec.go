package actuator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Exec is a driver that runs a program (no shell) per command: the command's
// CloudEvent JSON on its standard input and its key fields in ROLLGUARD_*
// environment variables, besides the inherited environment. Exit status 0 is
// ok with the last line of standard output as detail; anything else failed,
// with the end of standard error.
type Exec struct {
	argv    []string
	timeout time.Duration
}

// DefaultExecTimeout bounds a program run when no timeout is given.
const DefaultExecTimeout = time.Minute

// outputTail is how much of a program's output is kept for the detail.
const outputTail = 4096

// NewExec runs argv[0] with the arguments argv[1:]; timeout 0 means
// DefaultExecTimeout.
func NewExec(argv []string, timeout time.Duration) (*Exec, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, errors.New("exec driver: no command to run")
	}
	if timeout <= 0 {
		timeout = DefaultExecTimeout
	}
	return &Exec{argv: append([]string(nil), argv...), timeout: timeout}, nil
}

// Name is "exec".
func (e *Exec) Name() string { return "exec" }

// Act runs the program for c.
func (e *Exec) Act(ctx context.Context, c Command) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.argv[0], e.argv[1:]...)
	cmd.Stdin = bytes.NewReader(c.Raw)
	cmd.Env = append(os.Environ(), commandEnv(c)...)
	stdout, stderr := &tailBuffer{max: outputTail}, &tailBuffer{max: outputTail}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// A child the program left behind may hold the pipes open; do not
	// wait for it past the kill.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "", fmt.Errorf("%s: timed out after %s%s", e.argv[0], e.timeout, suffix(stderr.String()))
	case ctx.Err() != nil:
		return "", fmt.Errorf("%s: %w", e.argv[0], ctx.Err())
	case err != nil:
		return "", fmt.Errorf("%s: %w%s", e.argv[0], err, suffix(stderr.String()))
	}
	return lastLine(stdout.String()), nil
}

// commandEnv is the command's key fields as ROLLGUARD_* variables.
func commandEnv(c Command) []string {
	d, t := c.Data, c.Data.Target
	percent, start, end := "", "", ""
	if t.Percent != nil {
		percent = strconv.Itoa(*t.Percent)
	}
	if t.WindowStart != nil {
		start = t.WindowStart.UTC().Format(time.RFC3339Nano)
	}
	if t.WindowEnd != nil {
		end = t.WindowEnd.UTC().Format(time.RFC3339Nano)
	}
	return []string{
		"ROLLGUARD_COMMAND_ID=" + c.Event.ID,
		"ROLLGUARD_INCIDENT_ID=" + d.IncidentID,
		"ROLLGUARD_ACTION=" + d.Action,
		"ROLLGUARD_SERVICE=" + d.Service,
		"ROLLGUARD_FLAG=" + t.Flag,
		"ROLLGUARD_PERCENT=" + percent,
		"ROLLGUARD_VERSION=" + t.Version,
		"ROLLGUARD_COMMIT=" + t.Commit,
		"ROLLGUARD_STRATEGY=" + t.Strategy,
		"ROLLGUARD_WINDOW_START=" + start,
		"ROLLGUARD_WINDOW_END=" + end,
		"ROLLGUARD_DRY_RUN=" + strconv.FormatBool(d.DryRun),
	}
}

// suffix is ": s" for a non-empty s.
func suffix(s string) string {
	if s = strings.TrimSpace(s); s == "" {
		return ""
	}
	return ": " + s
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	s = strings.TrimRight(s, " \t\r\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimSpace(s)
}

// tailBuffer keeps the last max bytes written to it, so a chatty program
// cannot grow the actuator's memory.
type tailBuffer struct {
	max int
	buf []byte
	cut bool
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
		b.cut = true
	}
	return n, nil
}

func (b *tailBuffer) String() string {
	if b.cut {
		return "…" + string(b.buf)
	}
	return string(b.buf)
}
