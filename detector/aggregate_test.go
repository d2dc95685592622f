package detector

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rollguard/rollguard/sample"
)

// twin runs the same traffic through two engines: direct gets the samples
// through Append, as a standalone rollguard does; merged gets them through
// sidecars' Aggregators, flushed every tick, and AppendAggregates. Every
// verdict, the deployments and the chart history must come out equal.
type twin struct {
	t              *testing.T
	c              *clock
	direct, merged *Engine
	rd, rm         *recorder
	sidecars       []*Aggregator
}

func newTwin(t *testing.T, config string, sidecars int) *twin {
	t.Helper()
	cfg := mustParse(t, config)
	w := &twin{t: t, c: newClock(), rd: &recorder{}, rm: &recorder{}}
	w.direct = NewEngine(cfg, EngineOptions{Handler: w.rd, Now: w.c.now})
	w.merged = NewEngine(cfg, EngineOptions{Handler: w.rm, Now: w.c.now})
	for i := 0; i < sidecars; i++ {
		w.sidecars = append(w.sidecars, NewAggregator(cfg, AggregatorOptions{}))
	}
	return w
}

// tick appends each batch (batch i to sidecar i mod n), merges every
// sidecar's flush, evaluates both engines and compares their verdicts.
func (w *twin) tick(batches ...[]sample.Sample) {
	w.t.Helper()
	for i, b := range batches {
		if err := w.direct.Append(b); err != nil {
			w.t.Fatal(err)
		}
		if err := w.sidecars[i%len(w.sidecars)].Append(b); err != nil {
			w.t.Fatal(err)
		}
	}
	for _, s := range w.sidecars {
		if err := w.merged.AppendAggregates(s.Flush()); err != nil {
			w.t.Fatal(err)
		}
	}
	w.c.advance(10 * time.Second)
	w.direct.Evaluate()
	w.merged.Evaluate()
	w.same("verdicts", w.rd.verdicts, w.rm.verdicts)
}

// same fails when a and b differ in JSON (which spells NaN, unlike DeepEqual).
func (w *twin) same(what string, a, b any) {
	w.t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		w.t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		w.t.Fatal(err)
	}
	if string(ja) != string(jb) {
		i := 0
		for i < len(ja) && i < len(jb) && ja[i] == jb[i] {
			i++
		}
		from := max(0, i-300)
		w.t.Fatalf("%s differ after %d evaluations, at byte %d\n direct: …%s\n merged: …%s", what, len(w.rd.verdicts), i,
			ja[from:min(len(ja), i+100)], jb[from:min(len(jb), i+100)])
	}
}

// finish compares the deployments and their chart histories and returns
// the last verdict.
func (w *twin) finish() GuardVerdict {
	w.t.Helper()
	deps := w.direct.Deployments()
	w.same("deployments", deps, w.merged.Deployments())
	for _, d := range deps {
		hd, _ := w.direct.History(d.ID)
		hm, _ := w.merged.History(d.ID)
		w.same("history of "+d.ID, hd, hm)
	}
	if len(w.rm.verdicts) == 0 {
		w.t.Fatal("no verdict")
	}
	return w.rm.verdicts[len(w.rm.verdicts)-1]
}

func labelled(s sample.Sample, version string) sample.Sample {
	s.Labels = sample.Labels{{Name: "service.name", Value: "checkout"}, {Name: "service.version", Value: version}}
	return s
}

// native is an exponential histogram at scale 3 (finer than the engine's
// latency scale, so it is downscaled) of n requests, slow of them at about
// 1.5 s and the rest at about 100 ms.
func native(version string, n, slow float64) sample.Sample {
	counts := make([]float64, 32) // indexes -27 (≈ 0.1 s) to 4 (≈ 1.5 s)
	counts[0], counts[31] = n-slow, slow
	return labelled(sample.Sample{Metric: "http.server.request.duration", Kind: sample.KindHistogram, Count: n,
		Native: &sample.NativeHistogram{Scale: 3, Positive: sample.ExpBuckets{Offset: -27, Counts: counts}}}, version)
}

// classic is a classic histogram of n requests, half at up to 100 ms, slow
// of them slower than 1 s, in whole counts.
func classic(version string, n, slow float64) sample.Sample {
	fast := math.Floor(n / 2)
	return labelled(sample.Sample{Metric: "http.server.request.duration", Kind: sample.KindHistogram, Count: n,
		Buckets: []sample.Bucket{{UpperBound: 0.1, Count: fast}, {UpperBound: 1, Count: n - fast - slow}, {UpperBound: math.Inf(1), Count: slow}}}, version)
}

// le is one classic bucket series on its own (remote write splits them).
func le(version string, bound, cum float64) sample.Sample {
	return labelled(sample.Sample{Metric: "http.server.request.duration", Kind: sample.KindHistogram,
		LE: &sample.Bucket{UpperBound: bound, Count: cum}}, version)
}

// everySignal guards checkout with every pushed signal type at once, and a
// second guard reads the same histogram, so a sample feeds several guards.
const everySignal = `
global:
  evaluation_interval: 10s
  no_data_timeout: 1m
guards:
  - name: checkout
    service: checkout
    alpha: 0.01
    flags: [new-flow]
    signals:
      - name: errors
      - name: latency
        type: latency
        quantiles: [0.5, 0.99]
      - name: pool
        type: saturation
        metric: db.client.connection.count
        level: 90
      - name: writes
        type: data_integrity
        metric: db.client.failed_writes
        total_metric: http.server.request.duration
  - name: checkout-latency
    service: checkout
    signals:
      - name: slow
        type: latency
        quantiles: [0.9]
`

// trafficOf is one version's samples of one tick: requests with bad of
// them failing, latency as a classic histogram (or, with nat, an
// exponential one) with slow of them slower than 1 s, pool readings with
// saturated of 20 above the level, and failed writes.
func trafficOf(version string, n, bad, slow float64, saturated int, fails float64, nat bool) []sample.Sample {
	status := func(s sample.Sample, code string) sample.Sample {
		s.Labels = append(sample.Labels{{Name: "http.response.status_code", Value: code}}, s.Labels...)
		return s
	}
	var out []sample.Sample
	if nat {
		out = append(out, status(native(version, n-bad, slow), "200"), status(native(version, bad, 0), "503"))
	} else {
		out = append(out, status(classic(version, n-bad, slow), "200"), status(classic(version, bad, 0), "503"))
	}
	for k := 0; k < 20; k++ {
		v := 50.0
		if k < saturated {
			v = 95
		}
		out = append(out, gauge(version, v))
	}
	return append(out, failedWrites(version, fails))
}

// TestAggregatesEquivalent: the same samples through Engine.Append and
// through sidecars' Aggregators and Engine.AppendAggregates give the same
// verdicts and evidence at every tick (error ratio, classic and native
// latency, saturation, data integrity, two guards on one metric), the same
// implicit deployment and the same chart history, for a bad canary and for
// its healthy twin, with the traffic on one sidecar or spread over two.
func TestAggregatesEquivalent(t *testing.T) {
	for _, tc := range []struct {
		name     string
		native   bool
		sidecars int
		bad      bool
	}{
		{"bad canary classic", false, 1, true},
		{"healthy canary classic", false, 1, false},
		{"bad canary native two sidecars", true, 2, true},
		{"healthy canary native two sidecars", true, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newTwin(t, everySignal, tc.sidecars)
			for i := 0; i < 5; i++ { // v1 alone: no deployment, the before-window fills
				w.tick(trafficOf("v1", 1000, 10, 5, 2, 2, tc.native))
			}
			if d := w.merged.Deployments(); len(d) != 0 {
				t.Fatalf("a deployment without a new version: %+v", d)
			}
			bad, slow, saturated, fails := 10.0, 5.0, 2, 2.0
			if tc.bad {
				bad, slow, saturated, fails = 50, 40, 8, 10
			}
			// The opening tick: the new version first (see AppendAggregates),
			// then both every tick.
			w.tick(trafficOf("v2", 1000, bad, slow, saturated, fails, tc.native), trafficOf("v1", 1000, 10, 5, 2, 2, tc.native))
			for i := 0; i < 40; i++ {
				w.tick(trafficOf("v1", 1000, 10, 5, 2, 2, tc.native), trafficOf("v2", 1000, bad, slow, saturated, fails, tc.native))
			}
			v := w.finish()
			deps := w.merged.Deployments()
			if len(deps) != 1 || deps[0].Source != "implicit" || deps[0].Version != "v2" || deps[0].PreviousVersion != "v1" {
				t.Fatalf("deployments through aggregates = %+v", deps)
			}
			checkout := w.rm.verdicts[len(w.rm.verdicts)-2] // guards are evaluated by name
			if checkout.Guard != "checkout" || v.Guard != "checkout-latency" || len(checkout.Signals) != 5 || len(v.Signals) != 1 {
				t.Fatalf("verdicts of %s (%d signals) and %s (%d)", checkout.Guard, len(checkout.Signals), v.Guard, len(v.Signals))
			}
			for _, gv := range []GuardVerdict{checkout, v} {
				if (gv.State == StateRegressed) != tc.bad {
					t.Errorf("%s: %s", gv.Guard, gv.State)
				}
				for _, ev := range gv.Signals {
					if !tc.bad && ev.State == StateRegressed {
						t.Errorf("healthy twin: %s regressed (%s)", ev.Signal, ev.Reason)
					}
					if ev.Candidate.Total == 0 || ev.Baseline.Total == 0 {
						t.Errorf("%s: no traffic counted: %+v / %+v", ev.Signal, ev.Candidate, ev.Baseline)
					}
				}
			}
			if tc.bad {
				for _, ev := range checkout.Signals {
					if ev.Signal == "pool" {
						// The same 2 (8) of 20 readings saturated every
						// tick, without pod labels: the gauge test takes
						// readings as autocorrelated until the data show
						// otherwise, and 40 ticks of one block each do not.
						continue
					}
					if ev.Signal != "latency:p50" && ev.State != StateRegressed || ev.Signal == "latency:p50" && tc.native != (ev.State == StateRegressed) {
						// classic p50 sits at 100 ms, below which both versions are alike
						t.Errorf("bad canary: %s is %s (%s)", ev.Signal, ev.State, ev.Reason)
					}
				}
			}
		})
	}
}

// TestAggregatesBeforeAfter: an all-at-once release compared with the
// stable version's before-window, which the central builds from
// aggregates just as from samples; the window-too-small case is no_data.
func TestAggregatesBeforeAfter(t *testing.T) {
	for _, tc := range []struct {
		name      string
		canaryBad float64
		preTicks  int
		want      State
	}{{"worse", 40, 30, StateRegressed}, {"same", 10, 30, StateInconclusive}, {"window too small", 40, 0, StateNoData}} {
		t.Run(tc.name, func(t *testing.T) {
			w := newTwin(t, engineConfig, 1)
			w.tick([]sample.Sample{requests("checkout", "v1", 200, 1)})
			for i := 0; i < tc.preTicks; i++ {
				w.tick([]sample.Sample{requests("checkout", "v1", 200, 990), requests("checkout", "v1", 500, 10)})
			}
			for i := 0; i < 60 && (len(w.rm.verdicts) == 0 || w.rm.verdicts[len(w.rm.verdicts)-1].State != StateRegressed); i++ {
				w.tick([]sample.Sample{requests("checkout", "v2", 200, 1000-tc.canaryBad), requests("checkout", "v2", 503, tc.canaryBad)})
			}
			v := w.finish()
			ev := v.Signals[0]
			if v.State != tc.want || ev.Kind != "before_after" {
				t.Fatalf("verdict %s (%s): %+v", v.State, ev.Kind, ev)
			}
			if tc.preTicks > 0 && ev.Baseline.Total != float64(tc.preTicks*1000+1) {
				t.Errorf("before-window through aggregates = %+v", ev.Baseline)
			}
		})
	}
}

// TestAggregatesThroughput: an announced deployment with a weight; a canary
// serving half its share regresses, one serving its share does not.
func TestAggregatesThroughput(t *testing.T) {
	cfg := strings.Replace(engineConfig, "      - name: errors\n", "      - name: served\n        type: throughput\n", 1)
	for _, tc := range []struct {
		name   string
		canary float64
		want   State
	}{{"drop", 50, StateRegressed}, {"share kept", 100, StateInconclusive}} {
		t.Run(tc.name, func(t *testing.T) {
			w := newTwin(t, cfg, 1)
			for _, e := range []*Engine{w.direct, w.merged} {
				if _, err := e.Announce(Deployment{Service: "checkout", Version: "v2", PreviousVersion: "v1", Weight: 10}); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < 60; i++ {
				w.tick([]sample.Sample{requests("checkout", "v1", 200, 900), requests("checkout", "v1", 503, 90)},
					[]sample.Sample{requests("checkout", "v2", 200, tc.canary), requests("checkout", "v2", 503, 10)})
			}
			if v := w.finish(); v.State != tc.want {
				t.Errorf("verdict %s: %+v", v.State, v.Signals[0])
			}
		})
	}
}

// TestAggregatesClassicBucketsAlone: classic bucket series that arrive one
// by one (remote write) aggregate like whole histograms.
func TestAggregatesClassicBucketsAlone(t *testing.T) {
	w := newTwin(t, latencyConfig, 1)
	series := func(version string, n, slow float64) []sample.Sample {
		s := hist(version, n, slow)
		s.Buckets = nil // the count alone, then each bucket series
		return []sample.Sample{s, le(version, 0.1, n*0.5), le(version, 1, n-n*slow), le(version, math.Inf(1), n)}
	}
	w.tick(series("v1", 1000, 0.005))
	w.tick(series("v2", 1000, 0.05), series("v1", 1000, 0.005)) // the opening tick, new version first
	for i := 0; i < 40; i++ {
		w.tick(series("v1", 1000, 0.005), series("v2", 1000, 0.05))
	}
	if v := w.finish(); v.State != StateRegressed || v.Signals[1].Boundary != 1 {
		t.Errorf("verdict %s: %+v", v.State, v.Signals)
	}
}

// TestAggregatorFlush: aggregates come out ordered (guards by name, versions
// as first seen, signals as first fed), the tick resets, versions without
// traffic and samples without a version are left out and counted.
func TestAggregatorFlush(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := NewAggregator(mustParse(t, everySignal), AggregatorOptions{Registerer: reg})
	noVersion := requests("checkout", "", 200, 7)
	_ = a.Append([]sample.Sample{
		requests("checkout", "v9", 200, 0), // no traffic
		hist("v2", 10, 0.1), requests("checkout", "v2", 503, 2),
		requests("checkout", "v1", 200, 5), noVersion,
		requests("other", "v1", 200, 5), // another service
		failedWrites("v2", 1), gauge("v2", 95),
	})
	got := a.Flush()
	want := []Aggregate{
		{Guard: "checkout", Signal: "errors", Version: "v2", Total: 12, Bad: 2},
		{Guard: "checkout", Signal: "latency", Version: "v2", Total: 12, Cum: map[float64]float64{0.1: 5, 1: 9, math.Inf(1): 10}},
		{Guard: "checkout", Signal: "writes", Version: "v2", Total: 12, Bad: 1},
		{Guard: "checkout", Signal: "pool", Version: "v2", Total: 1, Bad: 1},
		{Guard: "checkout", Signal: "errors", Version: "v1", Total: 5},
		{Guard: "checkout", Signal: "latency", Version: "v1", Total: 5},
		{Guard: "checkout", Signal: "writes", Version: "v1", Total: 5},
		{Guard: "checkout-latency", Signal: "slow", Version: "v2", Total: 12, Cum: map[float64]float64{0.1: 5, 1: 9, math.Inf(1): 10}},
		{Guard: "checkout-latency", Signal: "slow", Version: "v1", Total: 5},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("flush\n got: %+v\nwant: %+v", got, want)
	}
	if again := a.Flush(); len(again) != 0 {
		t.Errorf("second flush of the same tick: %+v", again)
	}
	if n := testutil.ToFloat64(a.metrics.dropped.WithLabelValues("no_version")); n != 2 { // one per guard reading it
		t.Errorf("no_version drops = %v, want 2", n)
	}
}

// TestAggregatorDoors: the aggregator filters at the door exactly as the
// engine does, and follows a new configuration.
func TestAggregatorDoors(t *testing.T) {
	cfg := mustParse(t, everySignal)
	e, a := NewEngine(cfg, EngineOptions{}), NewAggregator(cfg, AggregatorOptions{})
	ls := func(svc string) sample.Labels { return sample.Labels{{Name: "service.name", Value: svc}} }
	for _, m := range []string{"http.server.request.duration", "db.client.failed_writes", "db.client.connection.count", "other"} {
		if e.Wants(m) != a.Wants(m) || !reflect.DeepEqual(e.Doors(m), a.Doors(m)) ||
			e.WantsSeries(m, ls("checkout")) != a.WantsSeries(m, ls("checkout")) || a.WantsSeries(m, ls("cart")) {
			t.Errorf("%s: engine and aggregator filter differently", m)
		}
	}
	a.ApplyConfig(mustParse(t, engineConfig))
	if a.Wants("db.client.connection.count") || !a.Wants("http.server.request.duration") {
		t.Error("ApplyConfig did not change the door filter")
	}
	var _ sample.Appender = a
	var _ interface {
		sample.Filter
		sample.SeriesFilter
		sample.DoorFilter
	} = a
}

// TestAppendAggregatesDrops: aggregates the central cannot place are
// counted and dropped, and do not stop the rest of the message.
func TestAppendAggregatesDrops(t *testing.T) {
	c := newClock()
	e := NewEngine(mustParse(t, engineConfig), EngineOptions{Now: c.now})
	err := e.AppendAggregates([]Aggregate{
		{Guard: "nope", Signal: "errors", Version: "v1", Total: 1},
		{Guard: "checkout", Signal: "nope", Version: "v1", Total: 1},
		{Guard: "checkout", Signal: "errors", Version: "", Total: 1},
		{Guard: "checkout", Signal: "errors", Version: "v1", Total: math.NaN()},
		{Guard: "checkout", Signal: "errors", Version: "v1", Total: 100, Bad: -1},
		{Guard: "checkout", Signal: "errors", Version: "v1", Total: 100, Bad: 1},
		{Guard: "checkout", Signal: "errors", Version: "v2", Total: 100, Bad: 1},
		{Guard: "checkout", Signal: "errors", Version: "v3", Total: 100, Bad: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	for outcome, want := range map[string]float64{"unknown_guard": 1, "unknown_signal": 1, "no_version": 1, "invalid": 2, "merged": 2, "unconfirmed_version": 1} {
		if got := testutil.ToFloat64(e.metrics.aggregates.WithLabelValues(outcome)); got != want {
			t.Errorf("%s: %v, want %v", outcome, got, want)
		}
	}
	// Every version of the call is observed first: v2 opened a deployment;
	// v3, seen while it was under way, waits for global.new_version_hold.
	if deps := e.Deployments(); len(deps) != 1 || deps[0].Version != "v2" || deps[0].PreviousVersion != "v1" {
		t.Errorf("deployments = %+v", deps)
	}
}

// TestAggregatesOpeningTick: in the tick in which a new version appears,
// the stable version's aggregates join the new deployment's baseline cohort
// for every guard of the service, whichever message comes first.
func TestAggregatesOpeningTick(t *testing.T) {
	cfg := mustParse(t, engineConfig+`  - name: checkout-too
    service: checkout
    signals:
      - name: errors
`)
	c, rec := newClock(), &recorder{}
	e := NewEngine(cfg, EngineOptions{Handler: rec, Now: c.now})
	_ = e.AppendAggregates([]Aggregate{{Guard: "checkout", Signal: "errors", Version: "v1", Total: 100}})
	c.advance(10 * time.Second)
	e.Evaluate()
	// One message per guard, the stable version first in each.
	for _, g := range []string{"checkout", "checkout-too"} {
		_ = e.AppendAggregates([]Aggregate{
			{Guard: g, Signal: "errors", Version: "v1", Total: 1000, Bad: 10},
			{Guard: g, Signal: "errors", Version: "v2", Total: 1000, Bad: 10},
		})
	}
	c.advance(10 * time.Second)
	e.Evaluate()
	if len(rec.verdicts) != 2 {
		t.Fatalf("%d verdicts", len(rec.verdicts))
	}
	for _, v := range rec.verdicts {
		if ev := v.Signals[0]; ev.Baseline.Total != 1000 || ev.Candidate.Total != 1000 || ev.Ticks != 1 {
			t.Errorf("%s: the opening tick's batch = %+v / %+v", v.Guard, ev.Baseline, ev.Candidate)
		}
	}
}
