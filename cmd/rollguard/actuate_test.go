package main

import (
	"bytes"
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

	"github.com/alecthomas/kingpin/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/internal/natstest"
)

const actuateFlagFile = `{
  "$schema": "https://flagd.dev/schema/v0/flags.json",
  "flags": {
    "new-checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on",
      "targeting": {"fractional": [["on", 10], ["off", 90]]}},
    "dark-mode": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}
  }
}
`

// TestActuateEndToEnd: `rollguard actuate --driver=flagd` against a NATS
// server, trusting the key rollguard wrote, kills the flag a signed command
// names, reports ok on rollguard.result.flag_kill.checkout signed with its
// --sign.seed-file key, refuses an unsigned copy published first under the
// genuine command's id — under the copy's stream sequence, never as a
// result of the genuine command — and stops cleanly when told to.
func TestActuateEndToEnd(t *testing.T) {
	ns := actuateNATS(t)
	nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo("actuator", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	subj := actions.Subjects{Prefix: "rollguard"}
	if _, err := actions.EnsureStream(t.Context(), js, "ROLLGUARD", subj); err != nil {
		t.Fatal(err)
	}
	storage := t.TempDir()
	signer, err := actions.LoadSigner("", storage)
	if err != nil {
		t.Fatal(err)
	}
	flags := filepath.Join(t.TempDir(), "flags.json")
	if err := os.WriteFile(flags, []byte(actuateFlagFile), 0o644); err != nil {
		t.Fatal(err)
	}
	actuatorKeys := t.TempDir()
	resultSigner, err := actions.LoadSigner("", actuatorKeys) // writes signing.nk, the actuator's seed
	if err != nil {
		t.Fatal(err)
	}

	app := kingpin.New("rollguard", "")
	app.Terminate(nil)
	cmd, o := actuateFlags(app)
	parsed, err := app.Parse([]string{"actuate", "--nats.url=" + ns.ClientURL(), "--nats.user=actuator", "--nats.password=s3cret",
		"--durable=actuator-flagd", "--name=flagd-e2e", "--action=flag_kill", "--service=checkout",
		"--verify.key-file=" + filepath.Join(storage, "signing.pub"), "--driver=flagd", "--flagd.file=" + flags, "--log.level=debug",
		"--sign.seed-file=" + filepath.Join(actuatorKeys, "signing.nk")})
	if err != nil || parsed != cmd.FullCommand() {
		t.Fatalf("parse: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &actuateLog{t: t}
	code := make(chan int, 1)
	go func() { code <- runActuate(ctx, *o, logs) }()

	id := "d-3fa2b1c0d4e5/flag_kill/new-checkout"
	b := actuateCommand(t, id, "new-checkout")
	unsigned := nats.NewMsg(subj.Command(actions.ActionFlagKill, "checkout"))
	unsigned.Data = b
	unsigned.Header.Set(jetstream.MsgIDHeader, id) // the genuine id, as the junk had
	ack, err := js.PublishMsg(t.Context(), unsigned)
	if err != nil {
		t.Fatal(err)
	}
	m := actions.Message{Subject: subj.Command(actions.ActionFlagKill, "checkout"), ID: id, Data: b}
	if err := signer.Sign(&m); err != nil {
		t.Fatal(err)
	}
	if err := (actions.JetStreamPublisher{JS: js, Signer: signer}).Publish(t.Context(), m); err != nil {
		t.Fatal(err)
	}

	var results map[string]actions.ResultData
	forged := fmt.Sprintf("unverified/%d", ack.Sequence)
	actuateWait(t, 15*time.Second, func() error {
		results = actuateResults(t, js, resultSigner)
		if len(results) < 2 {
			return fmt.Errorf("results so far: %+v", results)
		}
		return nil
	})
	if r := results[id]; r.Status != actions.ResultOK || r.Actuator != "flagd-e2e" || r.Service != "checkout" ||
		r.IncidentID != "inc-d-3fa2b1c0d4e5" || !strings.Contains(r.Detail, `flag "new-checkout" set to variant "off"`) {
		t.Errorf("result %+v", r)
	}
	if r := results[forged]; r.Status != actions.ResultRejected || !strings.HasPrefix(r.Detail, "unsigned") {
		t.Errorf("unsigned copy: %+v", r)
	}

	got, err := os.ReadFile(flags)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Flags map[string]map[string]any `json:"flags"`
	}
	if err := json.Unmarshal(got, &doc); err != nil {
		t.Fatal(err)
	}
	kill, other := doc.Flags["new-checkout"], doc.Flags["dark-mode"]
	if _, targeted := kill["targeting"]; kill["defaultVariant"] != "off" || targeted || other["defaultVariant"] != "on" {
		t.Errorf("flag file:\n%s", got)
	}

	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("exit code %d", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("rollguard actuate did not stop")
	}
	if !logs.contains("stopped") {
		t.Error("no word of stopping in the log")
	}
}

// TestActuateFlagErrors: an actuator that could not verify or act is
// refused before it connects, with what to pass.
func TestActuateFlagErrors(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "signing.pub")
	signer, err := actions.LoadSigner("", dir)
	if err != nil {
		t.Fatal(err)
	}
	flags := filepath.Join(dir, "flags.json")
	if err := os.WriteFile(flags, []byte(actuateFlagFile), 0o644); err != nil {
		t.Fatal(err)
	}
	// Nothing listens on the URL: each case must fail before connecting.
	base, d := []string{"actuate", "--nats.url=nats://127.0.0.1:1"}, "--durable=actuator-test"
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no trusted key", []string{d, "--driver=flagd", "--flagd.file=" + flags}, 2, "no trusted key"},
		{"bad key", []string{d, "--verify.key=Uxyz", "--driver=flagd", "--flagd.file=" + flags}, 2, `trusted key "Uxyz"`},
		{"missing key file", []string{d, "--verify.key-file=" + filepath.Join(dir, "nope.pub"), "--driver=flagd", "--flagd.file=" + flags}, 2, "--verify.key-file"},
		{"no driver", []string{d, "--verify.key-file=" + key}, 2, "required flag(s) '--driver' not provided"},
		{"no durable", []string{"--verify.key-file=" + key, "--driver=flagd", "--flagd.file=" + flags}, 2, "required flag(s) '--durable' not provided"},
		{"empty durable", []string{"--durable=", "--verify.key-file=" + key, "--driver=flagd", "--flagd.file=" + flags}, 2, "--durable is empty"},
		{"exec without command", []string{d, "--verify.key-file=" + key, "--driver=exec"}, 2, "--driver=exec needs --exec.command"},
		{"webhook without url", []string{d, "--verify.key-file=" + key, "--driver=webhook"}, 2, "--driver=webhook needs --webhook.url"},
		{"webhook bad url", []string{d, "--verify.key-file=" + key, "--driver=webhook", "--webhook.url=ftp://x"}, 2, "not an http(s) URL"},
		{"webhook bad header", []string{d, "--verify.key-file=" + key, "--driver=webhook", "--webhook.url=http://x", "--webhook.header=Bearer x"}, 2, `--webhook.header "Bearer x"`},
		{"flagd without file", []string{d, "--verify.key-file=" + key, "--driver=flagd"}, 2, "--driver=flagd needs --flagd.file"},
		{"flagd missing file", []string{d, "--verify.key-file=" + key, "--driver=flagd", "--flagd.file=" + filepath.Join(dir, "nope.json")}, 2, "--flagd.file"},
		{"flagd bad mode", []string{d, "--verify.key-file=" + key, "--driver=flagd", "--flagd.file=" + flags, "--flagd.mode=zero"}, 2, "enum value must be one of off-variant,disabled, got 'zero'"},
		// The healthy twin: flags that pass get as far as connecting.
		{"complete", []string{d, "--verify.key=" + signer.PublicKey(), "--driver=webhook", "--webhook.url=http://x",
			"--webhook.header=Authorization: Bearer x"}, 1, "connect to nats nats://127.0.0.1:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errw bytes.Buffer
			args := append(append([]string(nil), base...), tc.args...)
			if code := rollguard(args, &out, &errw); code != tc.code || !strings.Contains(errw.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errw.String(), tc.code, tc.want)
			}
		})
	}
}

// actuateResults reads the results in the stream, by command id.
// actuateResults returns the results in the stream by command id, each
// checked to be the only one of its command, signed by signer and stored
// under its keyed Nats-Msg-Id.
func actuateResults(t *testing.T, js jetstream.JetStream, signer *actions.Signer) map[string]actions.ResultData {
	t.Helper()
	st, err := js.Stream(t.Context(), "ROLLGUARD")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]actions.ResultData{}
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(m.Subject, "rollguard.result.") {
			continue
		}
		var ev actions.Event
		var r actions.ResultData
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(ev.Data, &r); err != nil {
			t.Fatal(err)
		}
		if m.Subject != "rollguard.result."+r.Action+"."+r.Service {
			t.Errorf("result on %s: %+v", m.Subject, r)
		}
		if _, twice := out[r.CommandID]; twice {
			t.Errorf("a second result for %s: %+v", r.CommandID, r)
		}
		if !signer.Signs(m.Data, m.Header.Get) || m.Header.Get(jetstream.MsgIDHeader) != signer.MsgID(ev.ID) {
			t.Errorf("result %s is not signed by the actuator's seed file, or not under its keyed id", ev.ID)
		}
		out[r.CommandID] = r
	}
	return out
}

// actuateNATS runs a NATS server with JetStream that requires a password.
func actuateNATS(t *testing.T) *server.Server {
	t.Helper()
	return natstest.Start(t, func(o *server.Options) { o.Username, o.Password = "actuator", "s3cret" })
}

// actuateCommand is a flag_kill command as the playbook writes it.
func actuateCommand(t *testing.T, id, flag string) []byte {
	t.Helper()
	now := time.Now().UTC()
	zero := 0
	ev, err := actions.NewEvent(id, actions.CommandType(actions.ActionFlagKill), "checkout", now, actions.CommandData{
		IncidentID: "inc-d-3fa2b1c0d4e5", Action: actions.ActionFlagKill, Service: "checkout", Guard: "checkout",
		Deployment: actions.WireDeployment(detector.Deployment{ID: "d-3fa2b1c0d4e5", Service: "checkout", Version: "v2", PreviousVersion: "v1", Flags: []string{flag}}),
		Target:     actions.Target{Flag: flag, Percent: &zero}, IssuedAt: now, ExpiresAt: now.Add(10 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// actuateWait polls f until it returns nil or total has passed.
func actuateWait(t *testing.T, total time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	err := errors.New("not checked")
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %s: %v", total, err)
}

// actuateLog keeps the actuator's log and shows it in the test log.
type actuateLog struct {
	t   *testing.T
	mu  sync.Mutex
	buf strings.Builder
}

func (l *actuateLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return l.buf.Write(p)
}

func (l *actuateLog) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(l.buf.String(), s)
}
