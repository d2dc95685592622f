package actuator

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rollguard/rollguard/actions/wire"
)

// TestDecodeCommand: a command as the playbook writes it decodes; each
// way of not being one is refused with the reason.
func TestDecodeCommand(t *testing.T) {
	const subj = "rollguard.cmd.flag_kill.checkout"
	good := command(t, "d-1/flag_kill/new-checkout", wire.ActionFlagKill, "checkout", "new-checkout", nil)
	c, err := DecodeCommand(subj, good)
	if err != nil {
		t.Fatalf("a good command: %v", err)
	}
	if c.Event.ID != "d-1/flag_kill/new-checkout" || c.Data.Target.Flag != "new-checkout" || c.Subject != subj || !bytes.Equal(c.Raw, good) {
		t.Errorf("decoded %+v", c)
	}

	edit := func(f func(ev map[string]any, data map[string]any)) []byte {
		var ev map[string]any
		if err := json.Unmarshal(good, &ev); err != nil {
			t.Fatal(err)
		}
		data := ev["data"].(map[string]any)
		f(ev, data)
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name, subject string
		data          []byte
		want          string
	}{
		{"not json", subj, []byte("flag_kill checkout"), "decode event"},
		{"empty", subj, nil, "decode event"},
		{"specversion", subj, edit(func(ev, _ map[string]any) { ev["specversion"] = "0.3" }), `specversion "0.3" is not 1.0`},
		{"no id", subj, edit(func(ev, _ map[string]any) { delete(ev, "id") }), "event id is empty"},
		{"id with newline", subj, edit(func(ev, _ map[string]any) { ev["id"] = "a\r\nNats-Msg-Id: b" }), "control characters"},
		{"no data", subj, edit(func(ev, _ map[string]any) { delete(ev, "data") }), "event has no data"},
		{"data not an object", subj, edit(func(ev, _ map[string]any) { ev["data"] = []int{1} }), "decode data"},
		{"wrong type", subj, edit(func(ev, _ map[string]any) { ev["type"] = wire.CommandType(wire.ActionRollback) }), "is not io.rollguard.command.flag_kill.v1"},
		{"no action", subj, edit(func(_, d map[string]any) { delete(d, "action") }), "data.action"},
		{"wildcard service", subj, edit(func(_, d map[string]any) { d["service"] = "*" }), "data.service"},
		{"other service", subj, edit(func(_, d map[string]any) { d["service"] = "search" }), "data says flag_kill for search but it came on subject " + subj},
		{"other action", "rollguard.cmd.rollback.checkout", good, "data says flag_kill for checkout but it came on subject rollguard.cmd.rollback.checkout"},
		{"no expiry", subj, edit(func(_, d map[string]any) { delete(d, "expires_at") }), "data.expires_at is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeCommand(tc.subject, tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// FuzzDecodeCommand: any bytes on any subject decode or are refused without
// a panic, and what decodes is a command for the subject it came on.
func FuzzDecodeCommand(f *testing.F) {
	for _, a := range []string{wire.ActionFlagKill, wire.ActionRollback, wire.ActionDataAudit} {
		b, err := commandJSON("d-1/"+a+"/x", a, "checkout", "new-checkout", nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add("rollguard.cmd."+a+".checkout", b)
	}
	f.Add("rollguard.cmd.flag_kill.checkout", []byte(`{"specversion":"1.0","id":"x","type":"io.rollguard.command.flag_kill.v1","data":null}`))
	f.Add("rollguard.cmd.flag_kill.a.b", []byte(`{}`))
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		c, err := DecodeCommand(subject, data)
		if err != nil {
			return
		}
		if c.Event.ID == "" || !validID(c.Event.ID) || !validToken(c.Data.Action) || !validService(c.Data.Service) ||
			c.Data.ExpiresAt.IsZero() || c.Event.Type != wire.CommandType(c.Data.Action) ||
			!strings.HasSuffix(subject, ".cmd."+c.Data.Action+"."+c.Data.Service) {
			t.Errorf("accepted %q on %q as %+v", data, subject, c)
		}
	})
}
