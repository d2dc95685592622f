package simulate

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/detector"
)

// TestBeforeAfterDeterministic: a run depends only on its seeds, through
// the real engine; a 3× regression is caught within the burst budget's
// window after the deployment (it must persist past a minute's excursion),
// and a clean A/A run raises nothing over the watch.
func TestBeforeAfterDeterministic(t *testing.T) {
	b := DefaultBeforeAfter()
	b.Watch = 10 * time.Minute // keep the test short
	bad := b
	bad.Theta = 3
	sc := []BeforeAfterScenario{{Name: "aa", Setup: b, Runs: 4, Seed: 7}, {Name: "ab", Setup: bad, Runs: 4, Seed: 7}}
	r1, err := RunBeforeAfter(context.Background(), sc, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := RunBeforeAfter(context.Background(), sc, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range sc {
		for run := range r1[i].Alarms {
			if r1[i].Alarms[run] != r2[i].Alarms[run] || r1[i].Dispersions[run] != r2[i].Dispersions[run] {
				t.Errorf("%s run %d: %d/%v with 1 worker, %d/%v with 3", sc[i].Name, run,
					r1[i].Alarms[run], r1[i].Dispersions[run], r2[i].Alarms[run], r2[i].Dispersions[run])
			}
		}
	}
	for run, a := range r1[0].Alarms {
		if a >= 0 {
			t.Errorf("clean A/A run %d alarmed at tick %d", run, a)
		}
		if phi := r1[0].Dispersions[run]; !(phi >= 1 && phi < 1.5) {
			t.Errorf("clean A/A run %d: window's φ %v, want about 1", run, phi)
		}
	}
	for run, a := range r1[1].Alarms {
		if a < 0 || a > detector.DefaultBurstTicks+3 {
			t.Errorf("θ = 3 run %d: first alarm at tick %d, want by tick %d", run, a, detector.DefaultBurstTicks+3)
		}
	}
}

// TestBeforeAfterNuisances: the nuisances move the rate as documented — the
// retry clusters and the per-tick noise show in the window's φ.
func TestBeforeAfterNuisances(t *testing.T) {
	for _, tc := range []struct {
		name   string
		b      BeforeAfter
		minPhi float64
	}{
		{"retries", DefaultBeforeAfter().RetryClusters(), 2},
		{"noise", DefaultBeforeAfter().TickNoise(), 3},
	} {
		tc.b.Watch = time.Minute
		o, err := SimulateBeforeAfter(tc.b, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !(o.Dispersion >= tc.minPhi) {
			t.Errorf("%s: window's φ %v, want at least %v", tc.name, o.Dispersion, tc.minPhi)
		}
	}
	bad := DefaultBeforeAfter()
	bad.OutagesPerHour = 1
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "OutageFailure") {
		t.Errorf("outages without a failure share: %v", err)
	}
}
