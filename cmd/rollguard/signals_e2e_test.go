package main

// End-to-end tests of the signals beyond the error ratio — saturation,
// data integrity, SLO burn rate — and of the before/after baseline, each
// through the daemon with the OpenTelemetry SDK exporting over OTLP/HTTP,
// and each with a healthy twin that must publish no command.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/detector"
)

// sigConfig is testConfig with its errors signal replaced by signal (YAML
// at the signal list's indentation) and guardExtra added to the guard.
func sigConfig(signal, guardExtra string) string {
	cfg := strings.Replace(testConfig, "      - name: errors\n", signal, 1)
	return strings.Replace(cfg, "    flags: [new-checkout-flow]\n", "    flags: [new-checkout-flow]\n"+guardExtra, 1)
}

// poolService is one version of checkout whose instances report their
// database connection pools' connections in use, one attribute set per
// pool, so that each export carries one reading per pool: as a synchronous
// gauge, or as the UpDownCounter that OpenTelemetry's database semantic
// conventions prescribe for db.client.connection.count (a non-monotonic sum,
// which reads as a gauge).
type poolService struct {
	mp        *sdkmetric.MeterProvider
	gauge     metric.Int64Gauge
	updown    metric.Int64UpDownCounter
	inUse     []int64 // the UpDownCounter's current value per pool
	pools     []metric.MeasurementOption
	saturated float64 // the probability a reading is above the level
	rng       *rand.Rand
}

func newPoolService(t *testing.T, endpoint, instrument, version string, pools int, saturated float64, seed uint64) *poolService {
	t.Helper()
	exp, err := otlpmetrichttp.New(context.Background(), otlpmetrichttp.WithEndpointURL(endpoint))
	if err != nil {
		t.Fatal(err)
	}
	res := resource.NewSchemaless(attribute.String("service.name", "checkout"), attribute.String("service.version", version))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res),
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	p := &poolService{mp: mp, inUse: make([]int64, pools), saturated: saturated, rng: rand.New(rand.NewPCG(seed, 2))}
	m := mp.Meter("checkout")
	switch instrument {
	case "gauge":
		p.gauge, err = m.Int64Gauge("db.client.connection.count", metric.WithUnit("{connection}"))
	case "updowncounter":
		p.updown, err = m.Int64UpDownCounter("db.client.connection.count", metric.WithUnit("{connection}"))
	default:
		t.Fatalf("instrument %q", instrument)
	}
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < pools; i++ {
		p.pools = append(p.pools, metric.WithAttributeSet(attribute.NewSet(
			attribute.String("db.client.connection.pool.name", fmt.Sprintf("pool-%02d", i)),
			attribute.String("db.client.connection.state", "used"))))
	}
	return p
}

// report sets one reading per pool — 95 connections in use (saturated:
// the level is 90) or 40 — and exports them.
func (p *poolService) report(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for i, pool := range p.pools {
		v := int64(40)
		if p.rng.Float64() < p.saturated {
			v = 95
		}
		if p.gauge != nil {
			p.gauge.Record(ctx, v, pool)
		} else {
			p.updown.Add(ctx, v-p.inUse[i], pool)
			p.inUse[i] = v
		}
	}
	if err := p.mp.ForceFlush(ctx); err != nil {
		t.Fatalf("export: %v", err)
	}
}

// writesService is a service whose requests sometimes fail to write to the
// database: db.client.failed_writes counts those failures next to the
// request histogram.
type writesService struct {
	*service
	failed   metric.Int64Counter
	failRate float64
}

func newWritesService(t *testing.T, endpoint, version string, failRate float64, seed uint64) *writesService {
	t.Helper()
	s := newService(t, endpoint, "checkout", version, 0, seed)
	c, err := s.mp.Meter("checkout").Int64Counter("db.client.failed_writes", metric.WithUnit("{write}"))
	if err != nil {
		t.Fatal(err)
	}
	return &writesService{service: s, failed: c, failRate: failRate}
}

// serveWrites records n requests, each failing its write with probability
// failRate, and exports requests and failures together.
func (w *writesService) serveWrites(t *testing.T, n int) {
	t.Helper()
	fails := int64(0)
	for i := 0; i < n; i++ {
		if w.rng.Float64() < w.failRate {
			fails++
		}
	}
	w.failed.Add(context.Background(), fails)
	w.serve(t, n)
}

func decodeCommand(t *testing.T, data []byte) actions.CommandData {
	t.Helper()
	var ev actions.Event
	var cd actions.CommandData
	if err := json.Unmarshal(data, &ev); err != nil {
		t.Fatalf("decode CloudEvent: %v\n%s", err, data)
	}
	if ev.Type != "io.rollguard.command.flag_kill.v1" {
		t.Errorf("event type %q", ev.Type)
	}
	if err := json.Unmarshal(ev.Data, &cd); err != nil {
		t.Fatalf("decode command data: %v\n%s", err, ev.Data)
	}
	return cd
}

// oneCommand waits for the first command while round sends traffic, keeps
// the traffic going over the evaluations of the next second, and returns the
// one command published: a regression is contained once.
func oneCommand(t *testing.T, td *testDaemon, round func()) actions.CommandData {
	t.Helper()
	rounds := 0
	checkFor(t, 60*time.Second, func() error {
		round()
		rounds++
		if n := len(td.commands()); n == 0 {
			return fmt.Errorf("no command yet after %d rounds", rounds)
		}
		return nil
	})
	t.Logf("flag_kill published after %d rounds", rounds)
	detectedAt := time.Now()
	checkFor(t, 20*time.Second, func() error {
		round()
		if v := td.verdict("checkout"); v == nil || v.At.Before(detectedAt.Add(time.Second)) {
			return fmt.Errorf("waiting for evaluations after detection")
		}
		return nil
	})
	cmds := td.commands()
	if len(cmds) != 1 {
		t.Fatalf("want exactly 1 command, got %d", len(cmds))
	}
	if cmds[0].Subject != "rollguard.cmd.flag_kill.checkout" {
		t.Errorf("subject = %q", cmds[0].Subject)
	}
	cd := decodeCommand(t, cmds[0].Data)
	if cd.Action != "flag_kill" || cd.Service != "checkout" || cd.Target.Flag != "new-checkout-flow" ||
		cd.Deployment.Version != "v2" || cd.Deployment.PreviousVersion != "v1" {
		t.Errorf("command = %+v", cd)
	}
	if len(cd.Evidence) != 1 {
		t.Fatalf("evidence = %+v", cd.Evidence)
	}
	if v := td.verdict("checkout"); v == nil || v.State != detector.StateRegressed {
		t.Errorf("verdict after the command: %+v", v)
	}
	return cd
}

// noCommand waits until done accepts the guard's only evidence (every
// request or reading sent has been evaluated), then asserts that the
// verdict is not a regression and that nothing was published.
func noCommand(t *testing.T, td *testDaemon, done func(detector.Evidence) error) detector.Evidence {
	t.Helper()
	checkFor(t, 20*time.Second, func() error {
		v := td.verdict("checkout")
		if v == nil || len(v.Signals) != 1 {
			return fmt.Errorf("verdict %+v", v)
		}
		return done(v.Signals[0])
	})
	v := td.verdict("checkout")
	if v.State == detector.StateRegressed || v.Deployment.Version != "v2" || v.Deployment.PreviousVersion != "v1" {
		t.Errorf("verdict %s on %+v: %+v", v.State, v.Deployment, v.Signals)
	}
	if n := len(td.commands()); n != 0 {
		t.Fatalf("healthy candidate produced %d commands", n)
	}
	return v.Signals[0]
}

const saturationSignal = `      - name: pool
        type: saturation
        metric: db.client.connection.count
        level: 90
`

// TestSaturationCanary: the canary's connection pools are saturated on
// 40 % of readings against 10 % on the stable version; each tick carries
// one reading per pool and instance version. One flag_kill, with the
// readings as evidence; the twin, saturated as often as the stable, none.
// Once with a gauge, once with an UpDownCounter.
func TestSaturationCanary(t *testing.T) {
	const pools = 20
	for _, instrument := range []string{"gauge", "updowncounter"} {
		for _, tc := range []struct {
			name      string
			saturated float64
			commands  int
		}{{"saturated", 0.4, 1}, {"same", 0.1, 0}} {
			t.Run(instrument+"/"+tc.name, func(t *testing.T) {
				td := startDaemon(t, sigConfig(saturationSignal, ""))
				stable := newPoolService(t, td.otlp, instrument, "v1", pools, 0.1, 21)
				canary := newPoolService(t, td.otlp, instrument, "v2", pools, tc.saturated, 22)
				stable.report(t) // v1 is seen first: it becomes the stable version
				round := func() {
					stable.report(t)
					canary.report(t)
					// One batch a round: a tick is one export of each version.
					td.nextEvaluation(t, "checkout")
				}
				if tc.commands == 1 {
					cd := oneCommand(t, td, round)
					e := actions.DetectorEvidence(cd.Evidence)[0]
					if e.Signal != "pool" || e.Kind != "sequential" || e.State != detector.StateRegressed ||
						float64(e.EValue) < e.Threshold || e.Threshold != detectorThreshold(0.001) {
						t.Errorf("evidence = %+v", e)
					}
					// The evidence counts readings: a whole number of exports of every pool.
					if e.Candidate.Version != "v2" || e.Candidate.Total == 0 || int(e.Candidate.Total)%pools != 0 ||
						e.Baseline.Version != "v1" || int(e.Baseline.Total)%pools != 0 {
						t.Errorf("evidence cohorts = %+v / %+v", e.Candidate, e.Baseline)
					}
					if e.Candidate.Ratio <= e.Baseline.Ratio || float64(e.IntervalLow) <= 1 {
						t.Errorf("evidence: candidate saturated %.3f vs baseline %.3f, interval low %v", e.Candidate.Ratio, e.Baseline.Ratio, e.IntervalLow)
					}
					return
				}
				const rounds = 40
				for i := 0; i < rounds; i++ {
					round()
				}
				stable.report(t) // pairs the canary's last batch
				e := noCommand(t, td, func(e detector.Evidence) error {
					if e.Candidate.Total != rounds*pools {
						return fmt.Errorf("evaluated %v canary readings of %d", e.Candidate.Total, rounds*pools)
					}
					return nil
				})
				if e.Signal != "pool" || e.Kind != "sequential" || e.Baseline.Total < (rounds-1)*pools {
					t.Errorf("evidence = %+v", e)
				}
			})
		}
	}
}

const integritySignal = `      - name: writes
        type: data_integrity
        metric: db.client.failed_writes
        total_metric: http.server.request.duration
`

// TestDataIntegrityCanary: failed writes per request, 1 % on the canary
// against 0.2 % on the stable version, from a counter next to the request
// histogram. One flag_kill whose evidence counts requests and failures; the
// twin at 0.2 % publishes nothing.
func TestDataIntegrityCanary(t *testing.T) {
	const perRound = 1000
	for _, tc := range []struct {
		name     string
		failRate float64
		commands int
	}{{"worse", 0.01, 1}, {"same", 0.002, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			td := startDaemon(t, sigConfig(integritySignal, ""))
			stable := newWritesService(t, td.otlp, "v1", 0.002, 31)
			canary := newWritesService(t, td.otlp, "v2", tc.failRate, 32)
			stable.serveWrites(t, perRound)
			round := func() {
				stable.serveWrites(t, perRound)
				canary.serveWrites(t, perRound)
			}
			if tc.commands == 1 {
				cd := oneCommand(t, td, round)
				e := actions.DetectorEvidence(cd.Evidence)[0]
				if e.Signal != "writes" || e.Kind != "sequential" || e.State != detector.StateRegressed || float64(e.EValue) < e.Threshold {
					t.Errorf("evidence = %+v", e)
				}
				// Totals are requests (the histogram's counts), bad events the failed writes.
				if e.Candidate.Total == 0 || int(e.Candidate.Total)%perRound != 0 || e.Candidate.Bad == 0 ||
					e.Candidate.Ratio <= e.Baseline.Ratio || e.Baseline.Total == 0 {
					t.Errorf("evidence cohorts = %+v / %+v", e.Candidate, e.Baseline)
				}
				return
			}
			const rounds = 40
			for i := 0; i < rounds; i++ {
				round()
			}
			stable.serveWrites(t, perRound) // pairs the canary's last batch
			e := noCommand(t, td, func(e detector.Evidence) error {
				if e.Candidate.Total != rounds*perRound {
					return fmt.Errorf("evaluated %v canary requests of %d", e.Candidate.Total, rounds*perRound)
				}
				return nil
			})
			// About 0.2 % of 40,000 requests failed their writes, in both cohorts.
			if e.Signal != "writes" || e.Candidate.Bad < 20 || e.Candidate.Bad > 160 || e.Baseline.Bad == 0 {
				t.Errorf("evidence = %+v", e)
			}
		})
	}
}

const sloSignal = `      - name: availability
        type: slo
        objective: 0.999
`

// TestSLOBurn: an objective of 99.9 % on the candidate alone. 5 % errors
// burn the budget 50 times too fast over both windows of the 14.4x rule —
// the windows are of the daemon's wall clock, but the burn is read over the
// ticks they hold, so the rule fires on the first ticks and the test does
// not need five minutes. 0.05 % errors burn it at half the rate: nothing.
func TestSLOBurn(t *testing.T) {
	const perRound = 1000
	for _, tc := range []struct {
		name     string
		errRate  float64
		commands int
	}{{"burning", 0.05, 1}, {"within budget", 0.0005, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			td := startDaemon(t, sigConfig(sloSignal, ""))
			stable := newService(t, td.otlp, "checkout", "v1", 0.0005, 41)
			canary := newService(t, td.otlp, "checkout", "v2", tc.errRate, 42)
			stable.serve(t, perRound)
			round := func() {
				stable.serve(t, perRound)
				canary.serve(t, perRound)
			}
			if tc.commands == 1 {
				cd := oneCommand(t, td, round)
				e := actions.DetectorEvidence(cd.Evidence)[0]
				if e.Signal != "availability" || e.Kind != "rule" || e.State != detector.StateRegressed ||
					!strings.HasPrefix(e.Reason, "rule-based SLO burn") || e.Threshold != 14.4 || float64(e.Estimate) < 14.4 ||
					e.Theta0 != 0.999 || e.Candidate.Version != "v2" || e.Candidate.Ratio < 0.03 {
					t.Errorf("evidence = %+v", e)
				}
				return
			}
			const rounds = 20
			for i := 0; i < rounds; i++ {
				round()
			}
			e := noCommand(t, td, func(e detector.Evidence) error {
				if e.Candidate.Total != rounds*perRound {
					return fmt.Errorf("evaluated %v canary requests of %d", e.Candidate.Total, rounds*perRound)
				}
				return nil
			})
			if e.Signal != "availability" || e.Kind != "rule" || e.State != detector.StateInconclusive {
				t.Errorf("evidence = %+v", e)
			}
		})
	}
}

const beforeAfterBaseline = `    baseline:
      mode: auto
      min_requests: 2000
`

// TestBeforeAfterAllAtOnce: v1 serves alone, then v2 replaces it entirely
// (v1 stops exporting). With baseline mode auto the detector compares v2
// with v1's window before the deployment: at 5 % errors against 1 %, one
// flag_kill whose evidence is of kind before_after; at 1 %, none. Once with
// the deployment detected from the new version, once announced through
// POST /api/v1/deployments with "strategy": "all_at_once".
func TestBeforeAfterAllAtOnce(t *testing.T) {
	const perRound, preRounds = 1000, 6
	for _, announce := range []bool{false, true} {
		for _, tc := range []struct {
			name     string
			errRate  float64
			commands int
		}{{"worse", 0.05, 1}, {"same", 0.01, 0}} {
			name := "implicit/" + tc.name
			if announce {
				name = "announced/" + tc.name
			}
			t.Run(name, func(t *testing.T) {
				td := startDaemon(t, sigConfig("      - name: errors\n", beforeAfterBaseline))
				stable := newService(t, td.otlp, "checkout", "v1", 0.01, 51)
				for i := 0; i < preRounds; i++ { // the before-window: 6000 requests, above min_requests
					stable.serve(t, perRound)
				}
				if announce {
					code, b := td.post("/api/v1/deployments", `{"service":"checkout","version":"v2","strategy":"all_at_once"}`)
					if code != http.StatusCreated {
						t.Fatalf("announce: %d %s", code, b)
					}
					var dep detector.Deployment
					if err := json.Unmarshal(b, &dep); err != nil || dep.PreviousVersion != "v1" || dep.Strategy != "all_at_once" || dep.Source != "api" {
						t.Fatalf("announced %+v (%v)", dep, err)
					}
				}
				canary := newService(t, td.otlp, "checkout", "v2", tc.errRate, 52)
				round := func() { canary.serve(t, perRound) } // v1 is gone
				source, strategy := "implicit", ""
				if announce {
					source, strategy = "api", "all_at_once"
				}
				checkEvidence := func(e detector.Evidence) {
					t.Helper()
					if e.Signal != "errors" || e.Kind != "before_after" || e.Baseline.Version != "v1 (before)" ||
						e.Baseline.Total != preRounds*perRound || e.Candidate.Version != "v2" || e.Threshold != 2000 {
						t.Errorf("evidence = %+v", e)
					}
				}
				if tc.commands == 1 {
					cd := oneCommand(t, td, round)
					e := actions.DetectorEvidence(cd.Evidence)[0]
					checkEvidence(e)
					if e.State != detector.StateRegressed || float64(e.EValue) < e.Threshold ||
						!strings.Contains(e.Reason, "before the deployment") || e.Candidate.Ratio < 0.03 {
						t.Errorf("evidence = %+v", e)
					}
					if cd.Deployment.Source != source || cd.Deployment.Strategy != strategy {
						t.Errorf("deployment = %+v", cd.Deployment)
					}
					return
				}
				const rounds = 30
				for i := 0; i < rounds; i++ {
					round()
				}
				e := noCommand(t, td, func(e detector.Evidence) error {
					if e.Kind != "before_after" || e.Candidate.Total != rounds*perRound {
						return fmt.Errorf("%s evidence over %v canary requests of %d", e.Kind, e.Candidate.Total, rounds*perRound)
					}
					return nil
				})
				checkEvidence(e)
				if e.State != detector.StateInconclusive {
					t.Errorf("state %s: %+v", e.State, e)
				}
				if v := td.verdict("checkout"); v.Deployment.Source != source || v.Deployment.Strategy != strategy {
					t.Errorf("deployment = %+v", v.Deployment)
				}
			})
		}
	}
}
