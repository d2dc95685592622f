package actuator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollguard/rollguard/actions/wire"
)

// TestValidCommandKillsFlag: a signed flag_kill turns the flag off in the
// flagd file, leaves everything else as it was, and reports ok on
// rollguard.result.flag_kill.<service> under a deduplicating id.
func TestValidCommandKillsFlag(t *testing.T) {
	e := newEnv(t)
	file := writeFlagFile(t)
	fd, err := NewFlagd(file, "")
	if err != nil {
		t.Fatal(err)
	}
	d := &counting{Driver: fd}
	e.run(t, Options{Durable: "actuator-flagd", Name: "flagd-prod"}, d)

	id := "d-3fa2b1c0d4e5/flag_kill/new-checkout"
	seq := e.publishSigned(t, wire.ActionFlagKill, "checkout", id, command(t, id, wire.ActionFlagKill, "checkout", "new-checkout", nil))
	r := e.waitResult(t, id)

	if r.Subject != "rollguard.result.flag_kill.checkout" {
		t.Errorf("result subject %s", r.Subject)
	}
	wantID := id + "/result/flagd-prod"
	if r.Event.ID != wantID { // its Nats-Msg-Id is keyed: checked by results
		t.Errorf("result id %q, want %q", r.Event.ID, wantID)
	}
	if r.Event.Type != wire.ResultType(wire.ActionFlagKill) || r.Event.SpecVersion != "1.0" {
		t.Errorf("result event %+v", r.Event)
	}
	got := r.Data
	if got.Status != wire.ResultOK || got.IncidentID != "inc-d-1" || got.Action != wire.ActionFlagKill ||
		got.Service != "checkout" || got.Actuator != "flagd-prod" || got.DryRun || got.At.IsZero() ||
		!strings.Contains(got.Detail, `flag "new-checkout" set to variant "off"`) {
		t.Errorf("result %+v", got)
	}
	if calls := d.calls(); !slices.Equal(calls, []string{id}) {
		t.Errorf("driver calls %v", calls)
	}
	e.waitAcked(t, "actuator-flagd", seq)

	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	doc, want := flagDoc(t, b), flagDoc(t, []byte(flagFile))
	flag := want["flags"].(map[string]any)["new-checkout"].(map[string]any)
	flag["defaultVariant"] = "off"
	delete(flag, "targeting")
	if !reflect.DeepEqual(doc, want) {
		t.Errorf("flag file after the kill:\n%s", b)
	}
}

// TestRejectedCommands: forged, tampered, unsigned, expired, malformed,
// misrouted and replayed commands are refused and reported, the driver is
// not called, and the message is acked; the healthy twin published right
// after each is acted on. A message that fails verification is reported
// under its stream sequence (unverified/<seq>), never under the id it
// claims: a forgery naming the twin's id gets no result on the twin.
func TestRejectedCommands(t *testing.T) {
	const svc = "checkout"
	kill := wire.ActionFlagKill
	for _, tc := range []struct {
		name string
		// bad publishes the bad message; it returns the command id its
		// result carries and the message's stream sequence.
		bad    func(t *testing.T, e *env) (string, uint64)
		detail string
		// claimed is the command id an unverifiable message claims,
		// which no result may carry.
		claimed string
	}{
		{"forged", func(t *testing.T, e *env) (string, uint64) {
			other := newSigner(t)
			b := command(t, "forged-1", kill, svc, "new-checkout", nil)
			seq := e.publish(t, e.subj.Command(kill, svc), "forged-1", b, sign(t, other, b))
			return fmt.Sprintf("unverified/%d", seq), seq
		}, "signed by untrusted key U", "forged-1"},
		{"tampered", func(t *testing.T, e *env) (string, uint64) {
			b := command(t, "tampered-1", kill, svc, "new-checkout", nil)
			h := sign(t, e.signer, b)
			b = bytes.Replace(b, []byte(`"new-checkout"`), []byte(`"old-checkout"`), 1)
			seq := e.publish(t, e.subj.Command(kill, svc), "tampered-1", b, h)
			return fmt.Sprintf("unverified/%d", seq), seq
		}, "bad signature", "tampered-1"},
		{"unsigned", func(t *testing.T, e *env) (string, uint64) {
			seq := e.publish(t, e.subj.Command(kill, svc), "unsigned-1", command(t, "unsigned-1", kill, svc, "new-checkout", nil), nil)
			return fmt.Sprintf("unverified/%d", seq), seq
		}, "unsigned", "unsigned-1"},
		{"unsigned-without-id", func(t *testing.T, e *env) (string, uint64) {
			seq := e.publish(t, e.subj.Command(kill, svc), "", command(t, "x", kill, svc, "new-checkout", nil), nil)
			return fmt.Sprintf("unverified/%d", seq), seq
		}, "unsigned", "x"},
		{"unsigned-claims-twin", func(t *testing.T, e *env) (string, uint64) {
			// Junk first, naming the genuine command's id in its body and
			// its Nats-Msg-Id (the stream drops nothing: the twin comes
			// under another Nats-Msg-Id, as a keyed one would be).
			seq := e.publish(t, e.subj.Command(kill, svc), "twin", command(t, "twin", kill, svc, "new-checkout", nil), nil)
			return fmt.Sprintf("unverified/%d", seq), seq
		}, "unsigned", "twin"},
		{"expired", func(t *testing.T, e *env) (string, uint64) {
			return "expired-1", e.publishSigned(t, kill, svc, "expired-1", command(t, "expired-1", kill, svc, "new-checkout", func(d *wire.CommandData) {
				d.ExpiresAt = time.Now().Add(-time.Minute)
			}))
		}, "expired at ", ""},
		{"malformed", func(t *testing.T, e *env) (string, uint64) {
			// Signed by rollguard but no JSON: no id to report it under
			// but the stream sequence.
			seq := e.publishSigned(t, kill, svc, "malformed-1", []byte(`{"specversion":"1.0","id":`))
			return fmt.Sprintf("malformed/%d", seq), seq
		}, "malformed command: decode event", ""},
		{"misrouted", func(t *testing.T, e *env) (string, uint64) {
			// A signed rollback command republished on the flag_kill subject.
			return "misrouted-1", e.publishSigned(t, kill, svc, "misrouted-1", command(t, "misrouted-1", wire.ActionRollback, svc, "new-checkout", nil))
		}, "malformed command: data says rollback for checkout but it came on subject rollguard.cmd.flag_kill.checkout", ""},
		{"replayed", func(t *testing.T, e *env) (string, uint64) {
			// The same signed bytes as the twin, under another Nats-Msg-Id.
			b := command(t, "twin", kill, svc, "new-checkout", nil)
			return "twin", e.publish(t, e.subj.Command(kill, svc), "twin-again", b, sign(t, e.signer, b))
		}, "replayed: command twin was already handled at ", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			fd, err := NewFlagd(writeFlagFile(t), "")
			if err != nil {
				t.Fatal(err)
			}
			d := &counting{Driver: fd}
			e.run(t, Options{Durable: "actuator-flagd"}, d)

			replay := tc.name == "replayed"
			var twinSeq uint64
			if replay { // the original goes first
				twinSeq = e.publishSigned(t, kill, svc, "twin", command(t, "twin", kill, svc, "new-checkout", nil))
				e.waitResult(t, "twin")
			}
			badID, badSeq := tc.bad(t, e)
			if !replay {
				msgID := "twin"
				if tc.claimed == "twin" { // the junk holds "twin"; rollguard's id is keyed
					msgID = e.signer.MsgID("twin")
				}
				twinSeq = e.publishSigned(t, kill, svc, msgID, command(t, "twin", kill, svc, "new-checkout", nil))
			}
			var rejected result
			waitFor(t, 30*time.Second, func() error {
				for _, r := range e.resultsFor(t, badID) {
					if r.Data.Status == wire.ResultRejected {
						rejected = r
						return nil
					}
				}
				return fmt.Errorf("no rejection of %s in %+v", badID, e.results(t))
			})
			if !strings.Contains(rejected.Data.Detail, tc.detail) {
				t.Errorf("detail %q, want it to contain %q", rejected.Data.Detail, tc.detail)
			}
			if rejected.Subject != "rollguard.result.flag_kill.checkout" || rejected.Data.Actuator != "actuator-flagd" {
				t.Errorf("rejection %+v", rejected)
			}
			if replay {
				if rs := e.resultsFor(t, "twin"); len(rs) != 2 || rs[0].Data.Status != wire.ResultOK {
					t.Errorf("want the original's ok and the replay's rejection: %+v", rs)
				}
			} else if twin := e.waitResult(t, "twin"); twin.Data.Status != wire.ResultOK {
				t.Errorf("healthy twin: %+v", twin.Data)
			}
			if tc.claimed != "" {
				e.waitAcked(t, "actuator-flagd", max(badSeq, twinSeq))
				for _, r := range e.resultsFor(t, tc.claimed) {
					if r.Data.Status != wire.ResultOK || tc.claimed != "twin" {
						t.Errorf("a result carries the id %q the unverified message claimed: %+v", tc.claimed, r.Data)
					}
				}
			}
			if calls := d.calls(); !slices.Equal(calls, []string{"twin"}) {
				t.Errorf("driver calls %v, want only the healthy twin", calls)
			}
			e.waitAcked(t, "actuator-flagd", max(badSeq, twinSeq))
		})
	}
}

// TestRedeliveryDoesNotActTwice: a command delivered again (here: the
// consumer was recreated and starts from the beginning) is not acted on
// again; its stored result is reported again (and deduplicated), and the
// message is acked. A new command after it is acted on.
func TestRedeliveryDoesNotActTwice(t *testing.T) {
	e := newEnv(t)
	fd, err := NewFlagd(writeFlagFile(t), "")
	if err != nil {
		t.Fatal(err)
	}
	d := &counting{Driver: fd}
	stop := e.run(t, Options{Durable: "actuator-flagd"}, d)
	e.publishSigned(t, wire.ActionFlagKill, "checkout", "first", command(t, "first", wire.ActionFlagKill, "checkout", "new-checkout", nil))
	first := e.waitResult(t, "first")
	e.waitAcked(t, "actuator-flagd", 1)
	stop()

	if err := e.js.DeleteConsumer(t.Context(), DefaultStream, "actuator-flagd"); err != nil {
		t.Fatal(err)
	}
	e.run(t, Options{Durable: "actuator-flagd"}, d)
	seq := e.publishSigned(t, wire.ActionFlagKill, "checkout", "second", command(t, "second", wire.ActionFlagKill, "checkout", "dark-mode", nil))
	if second := e.waitResult(t, "second"); second.Data.Status != wire.ResultOK {
		t.Errorf("new command after the redelivery: %+v", second.Data)
	}
	e.waitAcked(t, "actuator-flagd", seq)
	if calls := d.calls(); !slices.Equal(calls, []string{"first", "second"}) {
		t.Errorf("driver calls %v, want first once and second", calls)
	}
	if again := e.resultsFor(t, "first"); len(again) != 1 || !reflect.DeepEqual(again[0], first) {
		t.Errorf("results of the redelivered command: %+v", again)
	}
}

// TestInterruptedActionNotRepeated: a command claimed by an actuator that
// stopped while acting (a claim with no outcome, long enough ago) is
// reported failed with an unknown outcome instead of being acted on again.
func TestInterruptedActionNotRepeated(t *testing.T) {
	e := newEnv(t)
	d := &counting{Driver: mustFlagd(t)}
	seq := e.publishSigned(t, wire.ActionFlagKill, "checkout", "interrupted", command(t, "interrupted", wire.ActionFlagKill, "checkout", "new-checkout", nil))

	kv, err := e.js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: DefaultBucket})
	if err != nil {
		t.Fatal(err)
	}
	claimedAt := time.Now().Add(-time.Hour).UTC()
	rec, _ := json.Marshal(record{CommandID: "interrupted", Actuator: "actuator-flagd", StreamSeq: seq, ClaimedAt: claimedAt})
	sum := sha256.Sum256([]byte("actuator-flagd\x00interrupted"))
	if _, err := kv.Create(t.Context(), hex.EncodeToString(sum[:]), rec); err != nil {
		t.Fatal(err)
	}

	e.run(t, Options{Durable: "actuator-flagd"}, d)
	twinSeq := e.publishSigned(t, wire.ActionFlagKill, "checkout", "fresh", command(t, "fresh", wire.ActionFlagKill, "checkout", "new-checkout", nil))
	r := e.waitResult(t, "interrupted")
	if r.Data.Status != wire.ResultFailed || !strings.Contains(r.Data.Detail, "outcome unknown") ||
		!strings.Contains(r.Data.Detail, claimedAt.Format(time.RFC3339)) {
		t.Errorf("interrupted command: %+v", r.Data)
	}
	if twin := e.waitResult(t, "fresh"); twin.Data.Status != wire.ResultOK {
		t.Errorf("healthy twin: %+v", twin.Data)
	}
	e.waitAcked(t, "actuator-flagd", twinSeq)
	if calls := d.calls(); !slices.Equal(calls, []string{"fresh"}) {
		t.Errorf("driver calls %v", calls)
	}
}

// TestDryRun: a dry-run command is reported ok and dry_run without the
// driver being called; the same command for real is acted on.
func TestDryRun(t *testing.T) {
	e := newEnv(t)
	file := writeFlagFile(t)
	fd, err := NewFlagd(file, "")
	if err != nil {
		t.Fatal(err)
	}
	d := &counting{Driver: fd}
	e.run(t, Options{Durable: "actuator-flagd"}, d)

	e.publishSigned(t, wire.ActionFlagKill, "checkout", "dry", command(t, "dry", wire.ActionFlagKill, "checkout", "new-checkout",
		func(d *wire.CommandData) { d.DryRun = true }))
	r := e.waitResult(t, "dry")
	if r.Data.Status != wire.ResultOK || !r.Data.DryRun || r.Data.Detail != "dry run: not acted" {
		t.Errorf("dry run: %+v", r.Data)
	}
	if b, _ := os.ReadFile(file); string(b) != flagFile {
		t.Errorf("a dry run changed the flag file:\n%s", b)
	}

	e.publishSigned(t, wire.ActionFlagKill, "checkout", "real", command(t, "real", wire.ActionFlagKill, "checkout", "new-checkout", nil))
	if r := e.waitResult(t, "real"); r.Data.Status != wire.ResultOK || r.Data.DryRun {
		t.Errorf("real run: %+v", r.Data)
	}
	if calls := d.calls(); !slices.Equal(calls, []string{"real"}) {
		t.Errorf("driver calls %v", calls)
	}
}

// TestDriverFailureReported: an action the driver cannot do is reported
// failed with the driver's error; one it can is ok.
func TestDriverFailureReported(t *testing.T) {
	e := newEnv(t)
	e.run(t, Options{Durable: "actuator-flagd"}, mustFlagd(t))
	e.publishSigned(t, wire.ActionFlagKill, "checkout", "unknown-flag", command(t, "unknown-flag", wire.ActionFlagKill, "checkout", "no-such-flag", nil))
	e.publishSigned(t, wire.ActionFlagKill, "checkout", "known-flag", command(t, "known-flag", wire.ActionFlagKill, "checkout", "dark-mode", nil))
	if r := e.waitResult(t, "unknown-flag"); r.Data.Status != wire.ResultFailed || !strings.Contains(r.Data.Detail, `unknown flag "no-such-flag"`) {
		t.Errorf("unknown flag: %+v", r.Data)
	}
	if r := e.waitResult(t, "known-flag"); r.Data.Status != wire.ResultOK {
		t.Errorf("known flag: %+v", r.Data)
	}
}

// TestFilters: an actuator consumes only the actions and services it is
// given; the others stay in the stream for other actuators.
func TestFilters(t *testing.T) {
	e := newEnv(t)
	d := &counting{Driver: mustFlagd(t)}
	e.run(t, Options{Durable: "actuator-flagd", Actions: []string{wire.ActionFlagKill, wire.ActionFlagKill},
		Services: []string{"checkout"}}, d)
	e.publishSigned(t, wire.ActionFlagKill, "search", "other-service", command(t, "other-service", wire.ActionFlagKill, "search", "new-checkout", nil))
	e.publishSigned(t, wire.ActionRollback, "checkout", "other-action", command(t, "other-action", wire.ActionRollback, "checkout", "new-checkout", nil))
	e.publishSigned(t, wire.ActionFlagKill, "checkout", "mine", command(t, "mine", wire.ActionFlagKill, "checkout", "new-checkout", nil))
	if r := e.waitResult(t, "mine"); r.Data.Status != wire.ResultOK {
		t.Errorf("own command: %+v", r.Data)
	}
	if rs := e.results(t); len(rs) != 1 {
		t.Errorf("results %+v, want only the one of the consumed command", rs)
	}
	if calls := d.calls(); !slices.Equal(calls, []string{"mine"}) {
		t.Errorf("driver calls %v", calls)
	}
}

// TestRunWaitsForStream: an actuator started before rollguard created its
// stream waits for it, then consumes.
func TestRunWaitsForStream(t *testing.T) {
	e := newBareEnv(t)
	logs := &logSink{t: t}
	e.run(t, Options{Durable: "actuator-flagd", Logger: hclog.New(&hclog.LoggerOptions{Output: logs})}, mustFlagd(t))
	waitFor(t, 30*time.Second, func() error {
		if !logs.contains("stream not found") {
			return errors.New("the actuator has not found the stream missing yet")
		}
		return nil
	})
	if _, err := wire.EnsureStream(t.Context(), e.js, DefaultStream, e.subj); err != nil {
		t.Fatal(err)
	}
	e.publishSigned(t, wire.ActionFlagKill, "checkout", "late", command(t, "late", wire.ActionFlagKill, "checkout", "new-checkout", nil))
	if r := e.waitResult(t, "late"); r.Data.Status != wire.ResultOK {
		t.Errorf("%+v", r.Data)
	}
}

// TestOptionsRequired: no verifier, no durable name or no driver is an
// error before anything is consumed; complete options start.
func TestOptionsRequired(t *testing.T) {
	e := newEnv(t)
	fd := mustFlagd(t)
	for _, tc := range []struct {
		o    Options
		d    Driver
		want string
	}{
		{Options{JS: e.js, Durable: "a"}, fd, "a verifier is required"},
		{Options{JS: e.js, Verifier: e.verifier}, fd, "a durable consumer name is required"},
		{Options{JS: e.js, Verifier: e.verifier, Durable: "a.b"}, fd, "may not contain"},
		{Options{JS: e.js, Verifier: e.verifier, Durable: "a", Actions: []string{"flag.kill"}}, fd, "is not a subject token"},
		{Options{JS: e.js, Verifier: e.verifier, Durable: "a"}, nil, "no driver"},
	} {
		if err := Run(t.Context(), tc.o, tc.d); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.want)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := Run(ctx, Options{JS: e.js, Verifier: e.verifier, Durable: "a"}, fd); err != nil {
		t.Errorf("complete options: %v", err)
	}
}

func mustFlagd(t *testing.T) *Flagd {
	t.Helper()
	fd, err := NewFlagd(writeFlagFile(t), "")
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// TestSlowActionNotRedelivered: an action that takes longer than the ack
// wait keeps its message in progress, so JetStream does not hand it to the
// other replica of the actuator meanwhile; the exec driver's program runs
// once.
func TestSlowActionNotRedelivered(t *testing.T) {
	e := newEnv(t)
	dir, file := script(t, "echo run >> \"$(dirname \"$0\")/runs\"\nsleep 1\necho done\n")
	x, err := NewExec([]string{"/bin/sh", file}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // two replicas sharing the consumer
		e.run(t, Options{Durable: "actuator-exec", AckWait: 300 * time.Millisecond}, x)
	}
	seq := e.publishSigned(t, wire.ActionRollback, "checkout", "slow", command(t, "slow", wire.ActionRollback, "checkout", "", nil))
	if r := e.waitResult(t, "slow"); r.Data.Status != wire.ResultOK || r.Data.Detail != "done" {
		t.Errorf("%+v", r.Data)
	}
	e.waitAcked(t, "actuator-exec", seq)
	c, err := e.js.Consumer(t.Context(), DefaultStream, "actuator-exec")
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Consumer != 1 {
		t.Errorf("%d deliveries of the one message", info.Delivered.Consumer)
	}
	if runs, _ := os.ReadFile(filepath.Join(dir, "runs")); string(runs) != "run\n" {
		t.Errorf("program runs: %q", runs)
	}
}

// TestSlowActionReportsProgress: a driver still at work after
// ProgressEvery tells rollguard so with in_progress results (each its own
// message id), then the final result; the quick twin sends none.
func TestSlowActionReportsProgress(t *testing.T) {
	e := newEnv(t)
	_, file := script(t, "sleep 1\necho done\n")
	x, err := NewExec([]string{"/bin/sh", file}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	e.run(t, Options{Durable: "actuator-exec", ProgressEvery: 300 * time.Millisecond}, x)
	e.publishSigned(t, wire.ActionRollback, "checkout", "slow", command(t, "slow", wire.ActionRollback, "checkout", "", nil))
	var got []result
	waitFor(t, 30*time.Second, func() error {
		got = e.resultsFor(t, "slow")
		if len(got) == 0 || got[len(got)-1].Data.Status != wire.ResultOK {
			return fmt.Errorf("results %+v, want progress then ok", got)
		}
		return nil
	})
	ids := map[string]bool{}
	for _, r := range got[:len(got)-1] {
		if r.Data.Status != wire.ResultInProgress || ids[r.MsgID] {
			t.Errorf("result %+v (id %s), want in_progress with its own id", r.Data, r.MsgID)
		}
		ids[r.MsgID] = true
	}
	if len(got) < 2 {
		t.Errorf("no in_progress before the result of a 1 s action reported every 300 ms: %+v", got)
	}

	quick, err := NewExec([]string{"/bin/true"}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	e.run(t, Options{Durable: "actuator-quick", Actions: []string{wire.ActionFlagKill}, ProgressEvery: time.Minute}, quick)
	e.publishSigned(t, wire.ActionFlagKill, "checkout", "quick", command(t, "quick", wire.ActionFlagKill, "checkout", "f", nil))
	if r := e.waitResult(t, "quick"); r.Data.Status != wire.ResultOK {
		t.Errorf("quick action: %+v", r.Data)
	}
}
