package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/actions/wire"
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

// TestDemo tells the whole story and exits: from the events rollguard
// publishes, the incident opened with the canary's deployment and the
// evidence, the signed flag kill, the actuator's result (and the flag off in
// the flagd file), verification, stabilization and the status updates, then
// the post-mortem is pointed to. It leaves no listener, goroutine or
// temporary file behind.
func TestDemo(t *testing.T) {
	before := runtime.NumGoroutine()
	r, tmp := startDemo(t, demoOptions{ExitWhenDone: true})
	if err := r.wait(t, 2*time.Minute); err != nil {
		t.Fatalf("demo: %v\n%s", err, r.out)
	}
	out := r.out.String()
	t.Logf("the demo printed:\n%s", out)
	inOrder(t, out,
		"the canary v2 is serving",
		"incident inc-d-", "opened on rollguard.incident.checkout: regression detected",
		"deployment: checkout v1 → v2 (implicit", "started at",
		"evidence: errors: v2", "e-value",
		"flag_kill sent: new-checkout-flow → 0%, signature verified against rollguard's key, on rollguard.cmd.flag_kill.checkout",
		"actuator actuator-flagd reports ok",
		"flags.json now serves new-checkout-flow off",
		"verifying: flag_kill carried out by actuator-flagd",
		"stabilized: time to detect", "to mitigate", "to recover",
		"every signal has stayed within tolerance",
		`status update`, `(stabilized`, `for customers: "The issue affecting checkout has been resolved`,
		"/api/v1/incidents/inc-d-", "/postmortem",
		"rollguard postmortem inc-d-", "--web.url=http://127.0.0.1:",
		"The story took")
	// Published before the actuator's result may arrive, or after.
	if !strings.Contains(out, `status update 1 on rollguard.status.checkout (containing, next within 5s), for customers: "We are aware`) {
		t.Errorf("the first status update is not told:\n%s", out)
	}
	if strings.Contains(out, "unknown") || strings.Contains(out, "signature check failed") {
		t.Errorf("the narration lacks a time or a signature:\n%s", out)
	}
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
	r.printed(t, "regression detected", time.Minute)
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

// demoWire builds the messages of a scripted story as rollguard and an
// actuator publish them, commands signed by signer.
type demoWire struct {
	t      *testing.T
	signer *wire.Signer
	msgs   []*nats.Msg
	// incident and status add an incident event and a status update.
	incident func(seq int, at time.Time, event, from, state, reason string, evs ...wire.Evidence)
	status   func(seq int, at time.Time, state, customer string)
}

func (w *demoWire) add(subject, id, typ string, at time.Time, data any) {
	w.t.Helper()
	ev, err := wire.NewEvent(id, typ, demoService, at, data)
	if err != nil {
		w.t.Fatal(err)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		w.t.Fatal(err)
	}
	m := wire.Message{Subject: subject, ID: id, Data: b}
	if strings.HasPrefix(subject, "rollguard.cmd.") {
		if err := w.signer.Sign(&m); err != nil {
			w.t.Fatal(err)
		}
	}
	msg := &nats.Msg{Subject: m.Subject, Data: m.Data, Header: nats.Header{}}
	for k, v := range m.Header {
		msg.Header.Set(k, v)
	}
	w.msgs = append(w.msgs, msg)
}

func demoSigner(t *testing.T) *wire.Signer {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	s, err := wire.NewSigner(seed)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDemoNarrator tells scripted stories from their events alone: the
// healthy one ends stabilized with its times computed from the events'
// times; in the others the narrator says what went wrong and keeps waiting,
// so that the demo fails on its timeout and says where the story stopped.
func TestDemoNarrator(t *testing.T) {
	trusted, stranger := demoSigner(t), demoSigner(t)
	flags := filepath.Join(t.TempDir(), "flags.json")
	if err := os.WriteFile(flags, []byte(strings.Replace(demoFlags, `"defaultVariant": "on"}`, `"defaultVariant": "off"}`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Minute) // when the deployment started; the narration starts 6s before
	zero := 0
	dep := wire.Deployment{ID: "d-1", Service: demoService, Version: demoCanary, PreviousVersion: demoStable,
		Flags: []string{demoFlag}, Source: "implicit", StartedAt: t0}
	regressed := wire.Evidence{Signal: "errors", State: "regressed", Candidate: wire.CohortCounts{Version: "v2", Total: 800, Bad: 48, Ratio: 0.06},
		Baseline: wire.CohortCounts{Version: "v1", Total: 700, Bad: 7, Ratio: 0.01}, Estimate: 6, IntervalLow: 1.3,
		IntervalHigh: wire.Float(math.Inf(1)), EValue: 1500, Threshold: 1000, Alpha: 0.001}
	healthy := wire.Evidence{Signal: "errors", State: "healthy", Candidate: wire.CohortCounts{Version: "v2", Total: 5000, Bad: 45, Ratio: 0.009},
		Baseline: wire.CohortCounts{Version: "v1", Total: 5000, Bad: 50, Ratio: 0.01}, Estimate: 0.9}
	const cmdID = "d-1/flag_kill/" + demoFlag

	// story publishes the events up to the actuator's result, signed by
	// signer, with the result's status.
	story := func(signer *wire.Signer, result string) *demoWire {
		w := &demoWire{t: t, signer: signer}
		incident := func(seq int, at time.Time, event, from, state, reason string, evs ...wire.Evidence) {
			w.add("rollguard.incident.checkout", fmt.Sprintf("inc-d-1/event/%d", seq), wire.IncidentType(event), at, wire.IncidentData{
				IncidentID: "inc-d-1", Event: event, Seq: seq, State: state, From: from, Reason: reason, Service: demoService,
				Guard: demoService, Deployment: dep, Evidence: evs, Commands: []string{cmdID}})
		}
		status := func(seq int, at time.Time, state, customer string) {
			w.add("rollguard.status.checkout", fmt.Sprintf("inc-d-1/status/%d", seq), wire.TypeStatus, at, wire.StatusData{
				IncidentID: "inc-d-1", Seq: seq, Service: demoService, Guard: demoService, State: state,
				Internal: "[" + state + "] …", Customer: customer, NextUpdate: at.Add(5 * time.Second)})
		}
		w.incident, w.status = incident, status
		detected := t0.Add(2 * time.Second)
		// A deployment announcement is no event of the story.
		w.msgs = append(w.msgs, &nats.Msg{Subject: "rollguard.deploy.checkout", Data: []byte(`{"version":"v3"}`)})
		incident(1, detected, "opened", "", actions.StateWatching, "", regressed)
		w.add("rollguard.cmd.flag_kill.checkout", cmdID, wire.CommandType(wire.ActionFlagKill), detected, wire.CommandData{
			IncidentID: "inc-d-1", Action: wire.ActionFlagKill, Service: demoService, Guard: demoService, Deployment: dep,
			Target: wire.Target{Flag: demoFlag, Percent: &zero}, IssuedAt: detected, ExpiresAt: detected.Add(15 * time.Minute)})
		w.msgs = append(w.msgs, w.msgs[len(w.msgs)-1]) // a retry JetStream drops; a core subscriber sees it twice
		incident(2, detected, "state_changed", actions.StateWatching, actions.StateContaining, "regression detected")
		status(1, detected, actions.StateContaining, "We are aware of an issue affecting checkout.")
		w.add("rollguard.result.flag_kill.checkout", cmdID+"/actuator-flagd", wire.ResultType(wire.ActionFlagKill), detected.Add(10*time.Millisecond), wire.ResultData{
			CommandID: cmdID, IncidentID: "inc-d-1", Action: wire.ActionFlagKill, Service: demoService, Status: result,
			Detail: "flag set off", Actuator: demoActuator, At: detected.Add(10 * time.Millisecond)})
		return w
	}
	stabilized := func(w *demoWire) {
		verifying := t0.Add(2*time.Second + 10*time.Millisecond)
		w.incident(3, verifying, "state_changed", actions.StateContaining, actions.StateVerifying, "flag_kill carried out by actuator-flagd")
		w.status(2, verifying, actions.StateVerifying, "We are aware of an issue affecting checkout.")
		w.status(3, verifying.Add(5*time.Second), actions.StateVerifying, "We are aware of an issue affecting checkout.")
		w.incident(4, t0.Add(20*time.Second), "state_changed", actions.StateVerifying, actions.StateStabilized,
			"every signal has stayed within tolerance of the baseline for 15s", healthy)
		w.status(4, t0.Add(20*time.Second), actions.StateStabilized, "The issue affecting checkout has been resolved.")
	}

	for _, tc := range []struct {
		name  string
		wire  func() *demoWire
		want  []string // in this order
		never []string
		where string // for a story that does not end
	}{
		{name: "stabilized", wire: func() *demoWire { w := story(trusted, wire.ResultOK); stabilized(w); return w },
			want: []string{
				"incident inc-d-1 opened on rollguard.incident.checkout: regression detected 2s after the deploy",
				"deployment: checkout v1 → v2 (implicit, from the service.version the SDK reports; deployment d-1, flags new-checkout-flow), started at 6",
				"evidence: errors: v2 6.0% bad (48 of 800 requests) against v1 1.0% (7 of 700); ratio 6.0×, between 1.3× and ∞ at every look; e-value 1500 ≥ 1000",
				"flag_kill sent: new-checkout-flow → 0%, signature verified against rollguard's key, on rollguard.cmd.flag_kill.checkout (command d-1/flag_kill/new-checkout-flow, expires in 15m0s)",
				"incident watching → containing: regression detected",
				`status update 1 on rollguard.status.checkout (containing, next within 5s), for customers: "We are aware`,
				"actuator actuator-flagd reports ok: flag set off",
				"flags.json now serves new-checkout-flow off",
				"verifying: flag_kill carried out by actuator-flagd; recovery must hold for 15s",
				"status update 2 on rollguard.status.checkout (verifying",
				"status update 3: still verifying, next within 5s",
				"stabilized: time to detect 2s, to mitigate 10ms, to recover 18s",
				"every signal has stayed within tolerance of the baseline for 15s: errors v2 0.90% (5000 requests) against v1 1.00%, ratio 0.90",
				`status update 4 on rollguard.status.checkout (stabilized, next within 5s), for customers: "The issue affecting checkout has been resolved."`,
			},
			never: []string{"signature check failed", "v3"}},
		{name: "actuator failed", wire: func() *demoWire {
			w := story(trusted, wire.ResultFailed)
			w.incident(3, t0.Add(3*time.Second), "state_changed", actions.StateContaining, actions.StateEscalated, "flag_kill failed by actuator-flagd")
			return w
		},
			want:  []string{"actuator actuator-flagd reports failed: flag set off", "incident containing → escalated: flag_kill failed by actuator-flagd"},
			never: []string{"now serves", "verifying", "stabilized"},
			where: "incident inc-d-1 is escalated: flag_kill failed by actuator-flagd"},
		{name: "command signed by a stranger", wire: func() *demoWire { return story(stranger, wire.ResultRejected) },
			want:  []string{"flag_kill sent: new-checkout-flow → 0%, signature check failed: command is signed by a key this actuator does not trust", "reports rejected"},
			never: []string{"signature verified", "stabilized"},
			where: "incident inc-d-1 is containing: regression detected"},
		{name: "nothing published", wire: func() *demoWire { return &demoWire{t: t} },
			never: []string{"opened", "sent"},
			where: "rollguard published no incident for checkout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			n, err := newDemoNarrator(&out, flags, "rollguard", trusted.PublicKey(), func(string) time.Duration { return 15 * time.Second })
			if err != nil {
				t.Fatal(err)
			}
			n.start = t0.Add(-6 * time.Second)
			msgs := tc.wire().msgs
			ch := make(chan *nats.Msg, len(msgs))
			for _, m := range msgs {
				ch <- m
			}
			idle := func(ctx context.Context) error { <-ctx.Done(); return nil }
			rg, act, fleet := demoStart(idle), demoStart(idle), demoStart(idle)
			defer func() {
				for _, a := range []*demoActor{rg, act, fleet} {
					if err := a.stop("part", time.Second); err != nil {
						t.Error(err)
					}
				}
			}()
			timeout := time.Second
			if tc.where == "" {
				timeout = 10 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			began := time.Now()
			id, err := n.tell(ctx, ch, nil, rg, act, fleet)
			if tc.where == "" && time.Since(began) >= demoStatusGrace {
				t.Errorf("the story ended on the grace after stabilized, not on its status update")
			}
			t.Logf("narration:\n%s", out.String())
			switch {
			case tc.where == "" && (err != nil || id != "inc-d-1"):
				t.Fatalf("tell = %q, %v; want inc-d-1", id, err)
			case tc.where != "" && !errors.Is(err, context.DeadlineExceeded):
				t.Fatalf("a story that does not end: tell = %q, %v; want the deadline", id, err)
			case tc.where != "" && !strings.Contains(n.where(), tc.where):
				t.Errorf("where() = %q, want %q", n.where(), tc.where)
			}
			inOrder(t, out.String(), append([]string{"narrating what rollguard publishes on rollguard.>"}, tc.want...)...)
			for _, s := range tc.never {
				if strings.Contains(out.String(), s) {
					t.Errorf("the narration says %q", s)
				}
			}
			if c := strings.Count(out.String(), "flag_kill sent"); tc.name != "nothing published" && c != 1 {
				t.Errorf("the command was told %d times", c)
			}
		})
	}
}
