package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"
)

// demoOutput collects what the demo prints while the test reads it.
type demoOutput struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *demoOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *demoOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// demoRun is runDemo in the background.
type demoRun struct {
	out    *demoOutput
	cancel context.CancelFunc
	done   chan error
}

// startDemo runs the demo with its temporary files under a directory of the
// test's, which it returns.
func startDemo(t *testing.T, o demoOptions) (*demoRun, string) {
	t.Helper()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // the demo's default storage goes here
	o.WebListenAddress = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	r := &demoRun{out: &demoOutput{}, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- runDemo(ctx, o, r.out, testWriter{t}) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("the demo did not stop within 30s of the test's end")
		}
	})
	return r, tmp
}

// wait returns the demo's result, failing the test after within.
func (r *demoRun) wait(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // the cleanup reads it again
		return err
	case <-time.After(within):
		t.Fatalf("the demo did not return within %s; it printed:\n%s", within, r.out)
		return nil
	}
}

// printed waits until the demo has printed s.
func (r *demoRun) printed(t *testing.T, s string, within time.Duration) {
	t.Helper()
	checkFor(t, within, func() error {
		if !strings.Contains(r.out.String(), s) {
			return fmt.Errorf("no %q in:\n%s", s, r.out)
		}
		return nil
	})
}

// demoField reads a value the demo's preamble prints, like "UI  http://…/".
func demoField(t *testing.T, out, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(name) + ` +(\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the demo printed no %s:\n%s", name, out)
	}
	return m[1]
}

// demoAddrs are the host:port of every listener the demo announced.
func demoAddrs(t *testing.T, out string) []string {
	t.Helper()
	var addrs []string
	for _, f := range []string{"UI", "OTLP/HTTP", "NATS"} {
		u, err := url.Parse(demoField(t, out, f))
		if err != nil || u.Host == "" {
			t.Fatalf("%s is not a URL: %v", f, err)
		}
		addrs = append(addrs, u.Host)
	}
	return addrs
}

// closedAfterDemo checks that nothing listens where the demo did.
func closedAfterDemo(t *testing.T, addrs []string) {
	t.Helper()
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after the demo returned", a)
		}
	}
}

// noGoroutinesLeft waits until the goroutine count is back near before.
func noGoroutinesLeft(t *testing.T, before int) {
	t.Helper()
	const tolerance = 3
	deadline := time.Now().Add(15 * time.Second)
	for runtime.NumGoroutine() > before+tolerance {
		if time.Now().After(deadline) {
			var b strings.Builder
			_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Fatalf("%d goroutines after the demo, %d before:\n%s", runtime.NumGoroutine(), before, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// inOrder checks that out holds each of steps, in that order.
func inOrder(t *testing.T, out string, steps ...string) {
	t.Helper()
	rest := out
	for _, s := range steps {
		i := strings.Index(rest, s)
		if i < 0 {
			t.Fatalf("the narration lacks %q after the steps before it:\n%s", s, out)
		}
		rest = rest[i+len(s):]
	}
}

// TestDemo tells the whole story and exits: the canary's deployment is
// seen, the regression detected with its evidence, the flag killed in the
// flagd file and recovery verified, then the post-mortem is pointed to. It
// leaves no listener, goroutine or temporary file behind.
func TestDemo(t *testing.T) {
	before := runtime.NumGoroutine()
	r, tmp := startDemo(t, demoOptions{ExitWhenDone: true})
	if err := r.wait(t, 2*time.Minute); err != nil {
		t.Fatalf("demo: %v\n%s", err, r.out)
	}
	out := r.out.String()
	t.Logf("the demo printed:\n%s", out)
	inOrder(t, out,
		"deployment seen: checkout v1 → v2",
		"regression detected", "evidence: errors: v2", "e-value",
		"flag_kill sent: new-checkout-flow → 0%",
		"actuator actuator-flagd reports ok",
		"flags.json now serves new-checkout-flow off",
		"verifying",
		"stabilized: time to detect",
		"/api/v1/incidents/inc-d-", "/postmortem",
		"rollguard postmortem inc-d-", "--web.url=http://127.0.0.1:",
		"The story took")
	if strings.Contains(out, "Ctrl-C") {
		t.Error("with --exit-when-done the demo offered to keep serving")
	}
	closedAfterDemo(t, demoAddrs(t, out))
	if _, err := os.Stat(demoField(t, out, "state")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the default storage path is still there: %v", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("the demo left %v in the temporary directory", left)
	}
	noGoroutinesLeft(t, before)
}

// TestDemoServesUntilCancelled: without --exit-when-done the demo keeps
// serving after the story; the post-mortem URL and the `rollguard
// postmortem` hint it printed both work; cancelling stops everything.
func TestDemoServesUntilCancelled(t *testing.T) {
	before := runtime.NumGoroutine()
	r, _ := startDemo(t, demoOptions{})
	r.printed(t, "press Ctrl-C to stop", 2*time.Minute)
	out := r.out.String()
	pm := regexp.MustCompile(`http://\S+/api/v1/incidents/(inc-d-[0-9a-f]+)/postmortem`).FindStringSubmatch(out)
	if pm == nil {
		t.Fatalf("no post-mortem URL in:\n%s", out)
	}
	resp, err := http.Get(pm[0])
	if err != nil {
		t.Fatal(err)
	}
	md, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", pm[0], resp.StatusCode, md)
	}
	for _, s := range []string{pm[1], "flag_kill", "new-checkout-flow", "stabilized"} {
		if !bytes.Contains(md, []byte(s)) {
			t.Errorf("the post-mortem lacks %q:\n%s", s, md)
		}
	}
	hint := regexp.MustCompile(`rollguard (postmortem \S+ --web\.url=\S+)`).FindStringSubmatch(out)
	if hint == nil {
		t.Fatalf("no postmortem hint in:\n%s", out)
	}
	var cli, cliErr bytes.Buffer
	if code := rollguard(strings.Fields(hint[1]), &cli, &cliErr); code != 0 || !strings.Contains(cli.String(), pm[1]) {
		t.Fatalf("rollguard %s: exit %d, %s\n%s", hint[1], code, cliErr.String(), cli.String())
	}

	r.cancel()
	if err := r.wait(t, 10*time.Second); err != nil {
		t.Fatalf("demo stopped with %v", err)
	}
	closedAfterDemo(t, demoAddrs(t, out))
	noGoroutinesLeft(t, before)
}

// TestDemoCancel: cancelled mid-story, the demo stops within seconds
// without an error, closes its listeners and keeps a storage path it was
// given.
func TestDemoCancel(t *testing.T) {
	before := runtime.NumGoroutine()
	storage := filepath.Join(t.TempDir(), "state")
	r, tmp := startDemo(t, demoOptions{StoragePath: storage})
	r.printed(t, "deployment seen", time.Minute)
	r.cancel()
	start := time.Now()
	if err := r.wait(t, 10*time.Second); err != nil {
		t.Fatalf("a cancelled demo returned %v", err)
	}
	t.Logf("stopped %s after the cancel", time.Since(start))
	out := r.out.String()
	if strings.Contains(out, "stabilized") || !strings.Contains(out, "stopped before the story ended") {
		t.Errorf("the narration does not say the story was cut short:\n%s", out)
	}
	closedAfterDemo(t, demoAddrs(t, out))
	if _, err := os.Stat(filepath.Join(storage, "signing.pub")); err != nil {
		t.Errorf("the storage path given was not kept: %v", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("the demo left %v in the temporary directory", left)
	}
	noGoroutinesLeft(t, before)
}

// TestDemoBadStart: the demo refuses a used storage path and a taken web
// address with a message that says what to do, and starts nothing.
func TestDemoBadStart(t *testing.T) {
	used := t.TempDir()
	if err := os.WriteFile(filepath.Join(used, "signing.nk"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tc := range []struct {
		name string
		o    demoOptions
		want string
	}{
		{"used storage", demoOptions{StoragePath: used, WebListenAddress: "127.0.0.1:0"}, "is not empty: the demo needs a fresh directory"},
		{"taken address", demoOptions{WebListenAddress: taken.Addr().String()}, "choose another address with --web.listen-address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := runDemo(context.Background(), tc.o, &out, testWriter{t})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("printed a story that cannot happen:\n%s", out.String())
			}
		})
	}
}

// TestDemoHelp: asking for the demo's help prints it and starts nothing.
func TestDemoHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := rollguard([]string{"demo", "--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "exit-when-done") || stdout.Len() != 0 {
		t.Fatalf("help %q, output %q", stderr.String(), stdout.String())
	}
}
