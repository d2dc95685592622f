package actions

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rollguard/rollguard/detector"
)

// publishJunk puts an unsigned junk message on the flag kill's subject
// under msgID, as someone who may publish on rollguard's subjects could.
func publishJunk(t *testing.T, js jetstream.JetStream, msgID string) {
	t.Helper()
	junk := nats.NewMsg("rollguard.cmd.flag_kill.checkout")
	junk.Data = []byte(`{"specversion":"1.0","id":"junk","type":"io.rollguard.command.flag_kill.v1"}`)
	junk.Header.Set(jetstream.MsgIDHeader, msgID)
	if _, err := js.PublishMsg(context.Background(), junk); err != nil {
		t.Fatal(err)
	}
}

// genuineCommands returns the ids of the commands in the stream signed by
// the harness's key, each stored under its keyed Nats-Msg-Id.
func genuineCommands(h *harness) []string {
	h.t.Helper()
	var ids []string
	for _, m := range h.messages("rollguard.cmd.") {
		var ev Event
		if !h.signer.Signs(m.Data, m.Header.Get) || json.Unmarshal(m.Data, &ev) != nil {
			continue
		}
		if got, want := m.Header.Get(jetstream.MsgIDHeader), h.signer.MsgID(ev.ID); got != want {
			h.t.Errorf("command %s stored under Nats-Msg-Id %q, want %q", ev.ID, got, want)
		}
		ids = append(ids, ev.ID)
	}
	return ids
}

// TestPlaybookJunkUnderSemanticID: junk published beforehand under the
// command's readable id (what the issue reproduced) no longer makes
// JetStream drop the genuine command: its Nats-Msg-Id is keyed.
func TestPlaybookJunkUnderSemanticID(t *testing.T) {
	h := newHarness(t, "", detector.Deployment{})
	kill := CommandID(h.dep.ID, ActionFlagKill, "new-flow")
	publishJunk(t, h.js, kill)

	h.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
	inc := h.wantState(StateContaining)
	if ids := genuineCommands(h); len(ids) != 1 || ids[0] != kill {
		t.Fatalf("genuine commands in the stream %v, want [%s]", ids, kill)
	}
	if c := inc.Commands[0]; c.Status != CommandPublished || c.Published == nil {
		t.Fatalf("command %s is %s, want published", c.ID, c.Status)
	}
	if n := testutil.ToFloat64(h.p.metrics.preempted.WithLabelValues("cmd")); n != 0 {
		t.Errorf("%v pre-emptions counted, want 0", n)
	}
}

// TestPlaybookPreemptedCommandEscalates: junk published under the keyed
// id (as if the id had leaked) pre-empts the flag kill. That is an alarm,
// not a success: the command is not marked published, the pre-emption is
// counted, and the incident escalates to the next rung with the reason.
// Status updates and incident events are published all the same.
func TestPlaybookPreemptedCommandEscalates(t *testing.T) {
	h := newHarness(t, "", detector.Deployment{})
	kill := CommandID(h.dep.ID, ActionFlagKill, "new-flow")
	publishJunk(t, h.js, h.signer.MsgID(kill))

	h.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
	h.flush() // the round after the pre-emption publishes what it queued
	inc := h.wantState(StateRollingBack)
	c := inc.Commands[0]
	if c.ID != kill || c.Status != CommandFailed || c.Published != nil || c.Result == nil ||
		!strings.Contains(c.Result.Detail, "pre-empted") {
		t.Fatalf("flag kill %+v, want failed as pre-empted and never published", c)
	}
	if !strings.Contains(timelineText(inc), "pre-empted") {
		t.Errorf("timeline does not say the command was pre-empted:\n%s", timelineText(inc))
	}
	if n := testutil.ToFloat64(h.p.metrics.preempted.WithLabelValues("cmd")); n != 1 {
		t.Errorf("%v pre-emptions counted, want 1", n)
	}
	// The rollback went out; the outbox is empty (nothing stuck behind
	// the pre-empted command).
	rollback := CommandID(h.dep.ID, ActionRollback, "v1")
	if ids := genuineCommands(h); len(ids) != 1 || ids[0] != rollback {
		t.Fatalf("genuine commands in the stream %v, want [%s]", ids, rollback)
	}
	if n := h.p.pendingLen(); n != 0 {
		t.Errorf("%d messages left in the outbox", n)
	}
	if len(h.messages("rollguard.status.checkout")) == 0 || len(h.messages("rollguard.incident.checkout")) == 0 {
		t.Error("no status update or incident event published")
	}
}

// TestPlaybookRepublishAfterCrash: the same command published again — by
// a rollguard that crashed after JetStream stored it, built anew with a
// later time — is a genuine duplicate: success, no alarm.
func TestPlaybookRepublishAfterCrash(t *testing.T) {
	h := newHarness(t, "", detector.Deployment{})
	h.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
	h.wantState(StateContaining)
	sent := h.messages("rollguard.cmd.")[0]

	// A second rollguard with the same key and no memory of the first.
	again := newHarnessOn(t, h.js, "", h.dep, nil)
	again.now = h.now.Add(5e9)
	again.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
	inc := again.wantState(StateContaining)
	if c := inc.Commands[0]; c.Status != CommandPublished {
		t.Fatalf("republished command is %s, want published", c.Status)
	}
	if n := testutil.ToFloat64(again.p.metrics.preempted.WithLabelValues("cmd")); n != 0 {
		t.Errorf("%v pre-emptions counted, want 0", n)
	}
	if cmds := h.messages("rollguard.cmd."); len(cmds) != 1 || cmds[0].Sequence != sent.Sequence {
		t.Fatalf("%d commands in the stream, want the first one alone", len(cmds))
	}
}
