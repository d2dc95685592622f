package actions

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rollguard/rollguard/detector"
)

// TestAdoptedGuardDoesNotRepublish: the owner of a guard publishes its flag
// kill and stops before it saves the incident (a paused or killed
// replica). The replica that takes the guard over finds no incident, and
// its detector finds the same regression: before it read the stream on
// adoption it published the flag kill and the incident event again under
// the same ids — JetStream dropped the copies, every subscriber saw both.
// Now it records them as published, at the first owner's time, and puts
// nothing on the wire. The twin: junk on the subject carrying the flag
// kill's id, not signed by rollguard, suppresses nothing.
func TestAdoptedGuardDoesNotRepublish(t *testing.T) {
	for _, junkOnly := range []bool{false, true} {
		name := map[bool]string{false: "published by the first owner", true: "only unsigned junk under its id"}[junkOnly]
		t.Run(name, func(t *testing.T) {
			js, ns := startJetStream(t)
			kill := CommandID("d-0123456789ab", ActionFlagKill, "new-flow")
			if junkOnly {
				junk := nats.NewMsg("rollguard.cmd.flag_kill.checkout")
				junk.Data = []byte(`{"specversion":"1.0","id":"` + kill + `","time":"2026-11-25T10:00:00Z"}`)
				if _, err := js.PublishMsg(context.Background(), junk); err != nil {
					t.Fatal(err)
				}
			} else {
				first := newHarnessOn(t, js, "", detector.Deployment{}, nil) // never saves: stopped first
				first.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
			}
			store, err := NewKVStore(context.Background(), js, "ROLLGUARD_INCIDENTS")
			if err != nil {
				t.Fatal(err)
			}
			next := newHarnessOn(t, js, "", detector.Deployment{}, store)
			next.p.o.Stored = StreamResults{JS: js, Stream: "ROLLGUARD", Subjects: Subjects{Prefix: "rollguard"}}
			next.now = next.now.Add(30 * time.Second)
			wire, err := subscribeWire(t, ns.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			if err := next.p.Adopt(context.Background(), "checkout"); err != nil {
				t.Fatal(err)
			}
			next.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
			inc := next.wantState(StateContaining)
			c := inc.Commands[0]
			onWire := testutil.ToFloat64(next.p.metrics.onWire.WithLabelValues("cmd"))
			seen := wire.drain()
			sentKill := seen[kill]
			if junkOnly {
				if sentKill != 1 || onWire != 0 || !c.SentAt.Equal(next.now) {
					t.Fatalf("junk suppressed the flag kill: on the wire %d times, %v counted already published, sent at %v", sentKill, onWire, c.SentAt)
				}
				return
			}
			if sentKill != 0 || onWire != 1 {
				t.Fatalf("the flag kill went on the wire again (%d times; %v counted already published)", sentKill, onWire)
			}
			var stored Event
			for _, m := range next.messages("rollguard.cmd.") {
				_ = json.Unmarshal(m.Data, &stored)
			}
			if c.Status != CommandPublished || c.SentAt == nil || !c.SentAt.Equal(stored.Time) || !c.AckFrom.Equal(stored.Time) {
				t.Fatalf("command %+v does not describe the stored one (sent %v)", c, stored.Time)
			}
			if n := seen[IncidentID("d-0123456789ab")+"/event/1"]; n != 0 {
				t.Errorf("incident event 1 published again %d times", n)
			}
		})
	}
}

// coreWire counts the messages on rollguard's subjects a core subscriber
// sees, by CloudEvent id: what reaches the wire, duplicates included.
type coreWire struct{ sub *nats.Subscription }

func subscribeWire(t *testing.T, url string) (*coreWire, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, err
	}
	t.Cleanup(nc.Close)
	sub, err := nc.SubscribeSync("rollguard.>")
	if err != nil {
		return nil, err
	}
	return &coreWire{sub}, nc.Flush()
}

// drain counts what arrived, by id; the playbook's flush has returned, so
// everything it published is on its way.
func (w *coreWire) drain() map[string]int {
	n := map[string]int{}
	for {
		m, err := w.sub.NextMsg(300 * time.Millisecond)
		if err != nil {
			return n
		}
		var ev Event
		if json.Unmarshal(m.Data, &ev) == nil {
			n[ev.ID]++
		}
	}
}
