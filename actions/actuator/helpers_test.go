package actuator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollguard/rollguard/actions/wire"
	"github.com/rollguard/rollguard/internal/natstest"
	"github.com/rollguard/rollguard/internal/poll"
)

// env is a real NATS server with JetStream, rollguard's stream, and a
// signing key the actuator trusts.
type env struct {
	js       jetstream.JetStream
	signer   *wire.Signer
	verifier *wire.Verifier
	subj     wire.Subjects
	// actuator signs the actuators' results, one key for the whole test
	// as an actuator given a seed file keeps it across restarts.
	actuator *wire.Signer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := newBareEnv(t)
	if _, err := wire.EnsureStream(t.Context(), e.js, DefaultStream, e.subj); err != nil {
		t.Fatal(err)
	}
	return e
}

// newBareEnv is newEnv without the stream.
func newBareEnv(t *testing.T) *env {
	t.Helper()
	ns := natstest.Start(t)
	js := natstest.JetStream(t, ns.ClientURL())
	signer := newSigner(t)
	v, err := wire.NewVerifier(signer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return &env{js: js, signer: signer, verifier: v, subj: wire.Subjects{Prefix: DefaultPrefix}, actuator: newSigner(t)}
}

// newSigner creates a fresh signing key as rollguard does on first start.
func newSigner(t *testing.T) *wire.Signer {
	t.Helper()
	s, err := wire.LoadSigner("", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// command is the CloudEvent JSON of a command as the playbook writes it,
// changed by edit.
func command(t *testing.T, id, action, service, flag string, edit func(*wire.CommandData)) []byte {
	t.Helper()
	b, err := commandJSON(id, action, service, flag, edit)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func commandJSON(id, action, service, flag string, edit func(*wire.CommandData)) ([]byte, error) {
	now := time.Now().UTC()
	zero := 0
	d := wire.CommandData{IncidentID: "inc-d-1", Action: action, Service: service, Guard: "checkout-errors",
		Deployment: wire.Deployment{ID: "d-1", Service: service, Version: "v2", PreviousVersion: "v1", Flags: []string{flag}},
		Target:     wire.Target{Flag: flag, Percent: &zero}, IssuedAt: now, ExpiresAt: now.Add(10 * time.Minute)}
	if edit != nil {
		edit(&d)
	}
	ev, err := wire.NewEvent(id, wire.CommandType(d.Action), service, now, d)
	if err != nil {
		return nil, err
	}
	return json.Marshal(ev)
}

// publish stores a message in the stream and returns its sequence; msgID
// empty sends no Nats-Msg-Id.
func (e *env) publish(t *testing.T, subject, msgID string, data []byte, header map[string]string) uint64 {
	t.Helper()
	m := nats.NewMsg(subject)
	m.Data = data
	if msgID != "" {
		m.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	for k, v := range header {
		m.Header.Set(k, v)
	}
	ack, err := e.js.PublishMsg(t.Context(), m)
	if err != nil {
		t.Fatal(err)
	}
	if ack.Duplicate {
		t.Fatalf("message %s was dropped as a duplicate", msgID)
	}
	return ack.Sequence
}

// sign returns the headers rollguard's signer puts on data.
func sign(t *testing.T, s *wire.Signer, data []byte) map[string]string {
	t.Helper()
	m := wire.Message{Data: data}
	if err := s.Sign(&m); err != nil {
		t.Fatal(err)
	}
	return m.Header
}

// publishSigned publishes a command as rollguard does and returns its sequence.
func (e *env) publishSigned(t *testing.T, action, service, id string, data []byte) uint64 {
	t.Helper()
	return e.publish(t, e.subj.Command(action, service), id, data, sign(t, e.signer, data))
}

// run runs the actuator until the test ends, and checks that it stops
// cleanly on cancel.
func (e *env) run(t *testing.T, o Options, d Driver) (stop func()) {
	t.Helper()
	o.JS = e.js
	if o.Verifier == nil {
		o.Verifier = e.verifier
	}
	if o.Signer == nil {
		o.Signer = e.actuator
	}
	if o.Durable == "" {
		o.Durable = "actuator-test"
	}
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o, d) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return after its context was cancelled")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// result is a result event as stored in the stream.
type result struct {
	Subject string
	MsgID   string
	Event   wire.Event
	Data    wire.ResultData
}

// results reads every result in the stream, in order.
func (e *env) results(t *testing.T) []result {
	t.Helper()
	st, err := e.js.Stream(t.Context(), DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []result
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(t.Context(), seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(m.Subject, e.subj.Prefix+".result.") {
			continue
		}
		r := result{Subject: m.Subject, MsgID: m.Header.Get(jetstream.MsgIDHeader)}
		if err := json.Unmarshal(m.Data, &r.Event); err != nil {
			t.Fatalf("result %d: %v", seq, err)
		}
		// Every result is signed by the actuator and stored under its
		// keyed id, so rollguard can believe it and nobody pre-empt it.
		if !e.actuator.Signs(m.Data, m.Header.Get) {
			t.Errorf("result %d (%s) is not signed by the actuator's key", seq, r.Event.ID)
		}
		if want := e.actuator.MsgID(r.Event.ID); r.MsgID != want {
			t.Errorf("result %d (%s) has Nats-Msg-Id %q, want the keyed %q", seq, r.Event.ID, r.MsgID, want)
		}
		if err := json.Unmarshal(r.Event.Data, &r.Data); err != nil {
			t.Fatalf("result %d: %v", seq, err)
		}
		out = append(out, r)
	}
	return out
}

// resultsFor are the results about a command id.
func (e *env) resultsFor(t *testing.T, commandID string) []result {
	var out []result
	for _, r := range e.results(t) {
		if r.Data.CommandID == commandID {
			out = append(out, r)
		}
	}
	return out
}

// waitResult waits for the one result about commandID.
func (e *env) waitResult(t *testing.T, commandID string) result {
	t.Helper()
	var got []result
	waitFor(t, 30*time.Second, func() error {
		if got = e.resultsFor(t, commandID); len(got) == 0 {
			return fmt.Errorf("no result for %s", commandID)
		}
		return nil
	})
	if len(got) != 1 {
		t.Fatalf("%d results for %s: %+v", len(got), commandID, got)
	}
	return got[0]
}

// waitAcked waits until the consumer has acked everything up to seq.
func (e *env) waitAcked(t *testing.T, durable string, seq uint64) {
	t.Helper()
	waitFor(t, 30*time.Second, func() error {
		c, err := e.js.Consumer(t.Context(), DefaultStream, durable)
		if err != nil {
			return err
		}
		info, err := c.Info(t.Context())
		if err != nil {
			return err
		}
		if info.AckFloor.Stream < seq || info.NumAckPending > 0 {
			return fmt.Errorf("ack floor %d, %d pending ack, want all up to %d", info.AckFloor.Stream, info.NumAckPending, seq)
		}
		return nil
	})
}

// waitFor polls f until it returns nil or total has passed.
func waitFor(t *testing.T, total time.Duration, f func() error) {
	t.Helper()
	poll.Until(t, total, f)
}

// counting wraps a real driver and records the commands it was given.
type counting struct {
	Driver
	mu  sync.Mutex
	ids []string
}

func (c *counting) Act(ctx context.Context, cmd Command) (string, error) {
	c.mu.Lock()
	c.ids = append(c.ids, cmd.Event.ID)
	c.mu.Unlock()
	return c.Driver.Act(ctx, cmd)
}

func (c *counting) calls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.ids...)
}

// flagFile is a flagd flag-definition file with a flag gating new code, an
// unrelated flag, and fields flagd knows that the driver does not.
const flagFile = `{
  "$schema": "https://flagd.dev/schema/v0/flags.json",
  "metadata": {"team": "payments"},
  "flags": {
    "new-checkout": {
      "state": "ENABLED",
      "variants": {"on": true, "off": false},
      "defaultVariant": "on",
      "targeting": {"fractional": [["on", 50], ["off", 50]]},
      "metadata": {"owner": "payments"}
    },
    "dark-mode": {
      "state": "ENABLED",
      "variants": {"enabled": true, "disabled": false},
      "defaultVariant": "enabled",
      "targeting": {"if": [{"in": ["@example.com", {"var": "email"}]}, "enabled", "disabled"]}
    }
  },
  "$evaluators": {"internal": {"in": ["@example.com", {"var": "email"}]}}
}
`

func writeFlagFile(t *testing.T) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "flags.json")
	if err := os.WriteFile(file, []byte(flagFile), 0o640); err != nil {
		t.Fatal(err)
	}
	return file
}

// flagDoc is the file decoded for comparison.
func flagDoc(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("flag file: %v\n%s", err, b)
	}
	return doc
}

// testLogger sends logs to the test log.
func testLogger(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "actuator", Level: hclog.Debug, Output: testWriter{t}})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// logSink keeps the log for the test to look into, and shows it in the test log.
type logSink struct {
	t   *testing.T
	mu  sync.Mutex
	buf strings.Builder
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return l.buf.Write(p)
}

func (l *logSink) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(l.buf.String(), s)
}
