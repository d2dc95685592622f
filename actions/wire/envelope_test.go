package wire

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

// TestNewEvent: the envelope is CloudEvents 1.0 structured JSON, in UTC,
// with the data encoded inside it.
func TestNewEvent(t *testing.T) {
	at := time.Date(2024, 5, 1, 14, 0, 0, 0, time.FixedZone("CEST", 2*3600))
	ev, err := NewEvent(CommandID("d-1", "flag_kill", "f"), CommandType(ActionFlagKill), "checkout", at,
		CommandData{IncidentID: IncidentID("d-1"), Action: ActionFlagKill, Service: "checkout",
			Deployment: Deployment{ID: "d-1", Service: "checkout"}, Evidence: []Evidence{{Signal: "errors", EValue: Float(math.Inf(1))}}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"specversion":"1.0","id":"d-1/flag_kill/f","source":"/rollguard","type":"io.rollguard.command.flag_kill.v1","subject":"checkout","time":"2024-05-01T12:00:00Z","datacontenttype":"application/json","data":`
	if string(b[:len(want)]) != want {
		t.Errorf("envelope = %s", b)
	}
	var data CommandData
	if err := json.Unmarshal(ev.Data, &data); err != nil {
		t.Fatal(err)
	}
	if data.IncidentID != "inc-d-1" || data.Deployment.ID != "d-1" || len(data.Evidence) != 1 || !math.IsInf(float64(data.Evidence[0].EValue), 1) {
		t.Errorf("data = %+v", data)
	}
}

// TestFloat: NaN and ±Inf travel as strings, everything else as a number.
func TestFloat(t *testing.T) {
	for _, c := range []struct {
		f    Float
		json string
	}{{1.5, `1.5`}, {0, `0`}, {Float(math.NaN()), `"NaN"`}, {Float(math.Inf(1)), `"+Inf"`}, {Float(math.Inf(-1)), `"-Inf"`}} {
		b, err := json.Marshal(c.f)
		if err != nil || string(b) != c.json {
			t.Errorf("marshal %v = %s, %v; want %s", c.f, b, err, c.json)
		}
		var back Float
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if back != c.f && !(math.IsNaN(float64(back)) && math.IsNaN(float64(c.f))) {
			t.Errorf("unmarshal %s = %v, want %v", b, back, c.f)
		}
	}
}

// TestSubjects: the subjects of the external contract.
func TestSubjects(t *testing.T) {
	s := Subjects{Prefix: "rollguard"}
	for got, want := range map[string]string{
		s.Command(ActionRollback, "checkout"): "rollguard.cmd.rollback.checkout",
		s.Result(ActionRollback, "checkout"):  "rollguard.result.rollback.checkout",
		s.Incident("checkout"):                "rollguard.incident.checkout",
		s.Status("checkout"):                  "rollguard.status.checkout",
		s.Results():                           "rollguard.result.>",
	} {
		if got != want {
			t.Errorf("subject %q, want %q", got, want)
		}
	}
}
