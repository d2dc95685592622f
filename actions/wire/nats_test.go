package wire

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rollguard/rollguard/internal/natstest"
)

// TestPublishDuplicate: a publish JetStream calls a duplicate is success
// only when the stored message is ours — the same bytes, or (with a
// signer) the same subject and envelope id signed by our key. A different
// message, one signed by another key, and one deleted from the stream
// since are pre-emptions.
func TestPublishDuplicate(t *testing.T) {
	ns := natstest.Start(t)
	js := natstest.JetStream(t, ns.ClientURL())
	subj := Subjects{Prefix: "rollguard"}
	st, err := EnsureStream(context.Background(), js, "ROLLGUARD", subj)
	if err != nil {
		t.Fatal(err)
	}
	ours, err := NewEphemeralSigner()
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := NewEphemeralSigner()
	if err != nil {
		t.Fatal(err)
	}
	msg := func(id, body string) Message {
		return Message{Subject: subj.Status("checkout"), ID: id, Data: []byte(`{"id":"` + id + `","data":"` + body + `"}`)}
	}
	ctx := context.Background()
	plain := JetStreamPublisher{JS: js}
	signed := JetStreamPublisher{JS: js, Signer: ours}
	for _, tc := range []struct {
		name         string
		first, again func() error
		preempted    bool
	}{
		{"same bytes, no signer", func() error { return plain.Publish(ctx, msg("a", "1")) },
			func() error { return plain.Publish(ctx, msg("a", "1")) }, false},
		{"other bytes, no signer", func() error { return plain.Publish(ctx, msg("b", "1")) },
			func() error { return plain.Publish(ctx, msg("b", "2")) }, true},
		{"rebuilt after a crash, signed by us", func() error { return signed.Publish(ctx, msg("c", "1")) },
			func() error { return signed.Publish(ctx, msg("c", "2")) }, false},
		{"signed by another key under our keyed id", func() error {
			m := msg("d", "1")
			if err := theirs.Sign(&m); err != nil {
				return err
			}
			m.ID = ours.MsgID("d") // a leaked id, published raw
			return plain.Publish(ctx, m)
		}, func() error { return signed.Publish(ctx, msg("d", "1")) }, true},
		{"ours, but another envelope id", func() error {
			m := msg("e-other", "1")
			if err := ours.Sign(&m); err != nil {
				return err
			}
			m.ID = ours.MsgID("e") // our signed message replayed under e's id
			return plain.Publish(ctx, m)
		}, func() error { return signed.Publish(ctx, msg("e", "1")) }, true},
		{"deleted since", func() error {
			if err := signed.Publish(ctx, msg("f", "1")); err != nil {
				return err
			}
			info, err := st.Info(ctx)
			if err != nil {
				return err
			}
			return st.DeleteMsg(ctx, info.State.LastSeq)
		}, func() error { return signed.Publish(ctx, msg("f", "1")) }, true},
	} {
		if err := tc.first(); err != nil {
			t.Fatalf("%s: first publish: %v", tc.name, err)
		}
		err := tc.again()
		if got := errors.Is(err, ErrPreempted); got != tc.preempted || (!tc.preempted && err != nil) {
			t.Errorf("%s: %v, want pre-empted %v", tc.name, err, tc.preempted)
		}
		if tc.preempted && err != nil && !strings.Contains(err.Error(), "stream message") {
			t.Errorf("%s: %q does not name the stream message", tc.name, err)
		}
	}
}
