package actions

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/rollguard/rollguard/actions/wire"
	"github.com/rollguard/rollguard/detector"
)

// TestWireMirrorsDetector: wire's copies of the detector types have the
// same exported fields, in the same order, with the same JSON tags, so the
// wire format cannot drift from what the detector writes.
func TestWireMirrorsDetector(t *testing.T) {
	for _, c := range []struct{ det, wire any }{
		{detector.Deployment{}, wire.Deployment{}},
		{detector.Evidence{}, wire.Evidence{}},
		{detector.CohortCounts{}, wire.CohortCounts{}},
	} {
		dt, wt := reflect.TypeOf(c.det), reflect.TypeOf(c.wire)
		var df, wf []string
		for i := 0; i < dt.NumField(); i++ {
			if f := dt.Field(i); f.IsExported() {
				df = append(df, f.Name+" "+string(f.Tag))
			}
		}
		for i := 0; i < wt.NumField(); i++ {
			wf = append(wf, wt.Field(i).Name+" "+string(wt.Field(i).Tag))
		}
		if !reflect.DeepEqual(df, wf) {
			t.Errorf("%s fields\n%q\n!= %s fields\n%q", wt, wf, dt, df)
		}
	}
}

// TestWireJSON: a deployment and evidence encode to the same bytes whether
// written as the detector's types or as wire's, and decode back.
func TestWireJSON(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	end := at.Add(time.Hour)
	d := detector.Deployment{ID: "d-1", Service: "checkout", Version: "v2", PreviousVersion: "v1", Commit: "abc",
		PreviousCommit: "def", Flags: []string{"f"}, Migration: detector.MigrationReversible, Strategy: "canary",
		Weight: 12.5, Source: "api", StartedAt: at, SupersededBy: "d-2", EndedAt: &end, EndReason: "superseded"}
	evs := []detector.Evidence{
		{Signal: "errors", Kind: "sequential", State: detector.StateRegressed,
			Baseline:  detector.CohortCounts{Version: "v1", Total: 1000, Bad: 3, Ratio: 0.003},
			Candidate: detector.CohortCounts{Version: "v2", Total: 900, Bad: 40, Ratio: 40.0 / 900},
			Estimate:  14.8, IntervalLow: detector.Float(math.NaN()), IntervalHigh: detector.Float(math.Inf(1)),
			Theta0: 1.2, EValue: detector.Float(math.Inf(-1)), PValue: 0.0001, Threshold: 1000, Alpha: 0.001, Ticks: 7,
			Quantile: 0.99, Boundary: 0.25, WindowStart: at, WindowEnd: end, CandidateSeen: end, BaselineSeen: at,
			Reason: "why"},
		{Signal: "slo", Kind: "rule", State: detector.StateNoData},
	}
	for _, c := range []struct{ det, wire any }{
		{d, WireDeployment(d)},
		{detector.Deployment{}, WireDeployment(detector.Deployment{})},
		{evs, WireEvidence(evs)},
		{[]detector.Evidence(nil), WireEvidence(nil)},
	} {
		want, err := json.Marshal(c.det)
		if err != nil {
			t.Fatal(err)
		}
		got, err := json.Marshal(c.wire)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("wire JSON\n%s\n!= detector JSON\n%s", got, want)
		}
	}
	b, _ := json.Marshal(WireEvidence(evs))
	var back []wire.Evidence
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(DetectorEvidence(back))
	if !bytes.Equal(again, b) {
		t.Errorf("round trip\n%s\n!= %s", again, b)
	}
}
