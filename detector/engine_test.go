package detector

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/sample"
)

const engineConfig = `
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
`

type clock struct{ t time.Time }

func (c *clock) now() time.Time                        { return c.t }
func (c *clock) advance(d time.Duration)               { c.t = c.t.Add(d) }
func newClock() *clock                                 { return &clock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)} }
func mustParse(t *testing.T, s string) *configs.Config { return mustParseB(t, s) }

func mustParseB(t testing.TB, s string) *configs.Config {
	t.Helper()
	cfg, err := configs.Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func requests(service, version string, status int, n float64) sample.Sample {
	return sample.Sample{
		Metric: "http.server.request.duration", Kind: sample.KindHistogram, Count: n,
		Labels: sample.Labels{
			{Name: "http.response.status_code", Value: strconv.Itoa(status)},
			{Name: "service.name", Value: service},
			{Name: "service.version", Value: version},
		},
	}
}

type recorder struct{ verdicts []GuardVerdict }

func (r *recorder) HandleVerdict(v GuardVerdict) { r.verdicts = append(r.verdicts, v) }

func (r *recorder) last(t *testing.T) GuardVerdict {
	t.Helper()
	if len(r.verdicts) == 0 {
		t.Fatal("no verdict")
	}
	return r.verdicts[len(r.verdicts)-1]
}

// runTick sends one tick of traffic for both versions and evaluates.
func runTick(e *Engine, c *clock, stableBad, canaryBad float64) {
	_ = e.Append([]sample.Sample{
		requests("checkout", "v1", 200, 1000-stableBad), requests("checkout", "v1", 500, stableBad),
		requests("checkout", "v2", 200, 1000-canaryBad), requests("checkout", "v2", 502, canaryBad),
	})
	c.advance(10 * time.Second)
	e.Evaluate()
}

func TestEngineImplicitDeploymentAndRegression(t *testing.T) {
	c, rec := newClock(), &recorder{}
	e := NewEngine(mustParse(t, engineConfig), EngineOptions{Handler: rec, Now: c.now})
	_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 100)})
	if deps := e.Deployments(); len(deps) != 0 {
		t.Fatalf("deployment without a new version: %+v", deps)
	}
	for i := 0; i < 30 && (len(rec.verdicts) == 0 || rec.last(t).State != StateRegressed); i++ {
		runTick(e, c, 10, 50)
	}
	v := rec.last(t)
	if v.State != StateRegressed {
		t.Fatalf("5x worse canary not detected in 30 ticks: %+v", v.Signals)
	}
	d := v.Deployment
	if d.Version != "v2" || d.PreviousVersion != "v1" || d.Source != "implicit" || len(d.Flags) != 1 || d.Flags[0] != "new-flow" {
		t.Errorf("deployment = %+v", d)
	}
	ev := v.Signals[0]
	if ev.Candidate.Bad == 0 || ev.Candidate.Ratio <= ev.Baseline.Ratio || ev.Kind != "sequential" || ev.Alpha != 0.01 {
		t.Errorf("evidence = %+v", ev)
	}
	// Without a pod label the candidate is one source, so the regression
	// must outlast a burst (detector.DefaultBurstTicks + 2 ticks) after
	// the first three ticks are held.
	if len(rec.verdicts) > 3+DefaultBurstTicks+2+4 {
		t.Errorf("took %d ticks to detect a 5x regression at 1000 requests per tick", len(rec.verdicts))
	}
}

// TestEngineThroughputRealisedShare: with total_metric the reference is the
// share of requests the load balancer sent each version, whatever the
// weight: a canary sent 4.3 % that serves 4.3 % of the successes has not
// regressed (weight 5 %, or none); one sent 4.3 % that serves 2 % — it
// drops half its requests without answering — has.
func TestEngineThroughputRealisedShare(t *testing.T) {
	cfg := strings.Replace(engineConfig, "      - name: errors\n", "      - name: served\n        type: throughput\n        total_metric: lb.requests\n", 1)
	sent := func(version string, n float64) sample.Sample {
		return sample.Sample{Metric: "lb.requests", Kind: sample.KindCounter, Value: n, Labels: sample.Labels{
			{Name: "service.name", Value: "checkout"}, {Name: "service.version", Value: version}}}
	}
	for _, tc := range []struct {
		name           string
		weight, served float64
		want           State
	}{{"served its realised share", 5, 43, StateInconclusive}, {"no weight", 0, 43, StateInconclusive}, {"drops half", 5, 20, StateRegressed}} {
		t.Run(tc.name, func(t *testing.T) {
			c, rec := newClock(), &recorder{}
			e := NewEngine(mustParse(t, cfg), EngineOptions{Handler: rec, Now: c.now})
			if _, err := e.Announce(Deployment{Service: "checkout", Version: "v2", PreviousVersion: "v1", Weight: tc.weight}); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 60; i++ { // samples reach the engine as increments
				_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 957), requests("checkout", "v2", 200, tc.served), sent("v1", 957), sent("v2", 43)})
				c.advance(10 * time.Second)
				e.Evaluate()
			}
			v := rec.last(t)
			if v.State != tc.want {
				t.Errorf("verdict %s: %+v", v.State, v.Signals[0])
			}
			if r := v.Signals[0].Reason; !strings.Contains(r, "lb.requests") {
				t.Errorf("the evidence does not name the realised share's metric: %q", r)
			}
		})
	}
}

// The healthy twin: the same flow with equal error rates never regresses and,
// with a tolerance, becomes healthy.
func TestEngineHealthyCanary(t *testing.T) {
	c, rec := newClock(), &recorder{}
	cfg := mustParse(t, engineConfig+"        tolerance: 0.5\n")
	e := NewEngine(cfg, EngineOptions{Handler: rec, Now: c.now})
	_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 100)})
	for i := 0; i < 300; i++ {
		runTick(e, c, 10, 10)
		if rec.last(t).State == StateRegressed {
			t.Fatalf("healthy canary regressed at tick %d", i)
		}
	}
	if v := rec.last(t); v.State != StateHealthy {
		t.Errorf("state after 300 equal ticks = %s, interval high %v", v.State, v.Signals[0].IntervalHigh)
	}
}

func TestEngineNoData(t *testing.T) {
	c, rec := newClock(), &recorder{}
	e := NewEngine(mustParse(t, engineConfig), EngineOptions{Handler: rec, Now: c.now})
	_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 100)})
	runTick(e, c, 1, 1)
	// Only the stable version keeps reporting: the candidate goes silent.
	for i := 0; i < 7; i++ {
		_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 100)})
		c.advance(10 * time.Second)
		e.Evaluate()
	}
	v := rec.last(t)
	if v.State != StateNoData || v.Signals[0].Reason != "candidate v2 has had no traffic for 1m20s" {
		t.Errorf("verdict %s (%s), want no_data", v.State, v.Signals[0].Reason)
	}
}

func TestEngineAnnounce(t *testing.T) {
	c := newClock()
	e := NewEngine(mustParse(t, engineConfig), EngineOptions{Now: c.now})
	if _, err := e.Announce(Deployment{Service: "checkout", Version: "v2"}); err == nil {
		t.Error("announce without a known stable version succeeded")
	}
	d, err := e.Announce(Deployment{Service: "checkout", Version: "v2", PreviousVersion: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	if d.ID != deploymentID("checkout", "v1", "v2") || d.Migration != MigrationNone || d.Flags[0] != "new-flow" {
		t.Errorf("deployment = %+v", d)
	}
	// The implicit detection of the same change is the same deployment.
	_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 1), requests("checkout", "v2", 200, 1)})
	if deps := e.Deployments(); len(deps) != 1 || deps[0].ID != d.ID || deps[0].Source != "api" {
		t.Errorf("deployments = %+v", deps)
	}
	// Re-announcing updates in place; a newer version supersedes.
	d2, _ := e.Announce(Deployment{Service: "checkout", Version: "v2", PreviousVersion: "v1", Commit: "abc"})
	if d2.ID != d.ID || d2.Commit != "abc" {
		t.Errorf("re-announce = %+v", d2)
	}
	d3, _ := e.Announce(Deployment{Service: "checkout", Version: "v3", PreviousVersion: "v1"})
	deps := e.Deployments()
	if len(deps) != 2 || deps[0].ID != d3.ID || deps[1].SupersededBy != d3.ID {
		t.Errorf("after supersede: %+v", deps)
	}
}

func TestEngineApplyConfigResetsChangedGuard(t *testing.T) {
	c, rec := newClock(), &recorder{}
	e := NewEngine(mustParse(t, engineConfig), EngineOptions{Handler: rec, Now: c.now})
	_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 100)})
	runTick(e, c, 10, 10)
	runTick(e, c, 10, 10)
	before := rec.last(t).Signals[0].Ticks
	e.ApplyConfig(mustParse(t, engineConfig)) // unchanged: state kept
	runTick(e, c, 10, 10)
	if n := rec.last(t).Signals[0].Ticks; n != before+1 {
		t.Errorf("ticks after unchanged reload = %d, want %d", n, before+1)
	}
	e.ApplyConfig(mustParse(t, engineConfig+"        tolerance: 0.3\n"))
	runTick(e, c, 10, 10)
	if n := rec.last(t).Signals[0].Ticks; n != 1 {
		t.Errorf("ticks after changed reload = %d, want 1 (state starts over)", n)
	}
	if !e.Wants("http.server.request.duration") || e.Wants("process.cpu.time") {
		t.Error("Wants does not follow the guards' metrics")
	}
}

// TestEnginePromotion: once the previous version has been gone for the
// promotion hold and nothing regressed, the deployment ends as promoted and
// the next version is compared against the promoted one.
func TestEnginePromotion(t *testing.T) {
	c := newClock()
	cfg := mustParse(t, strings.Replace(engineConfig, "no_data_timeout: 1m", "no_data_timeout: 1m\n  promotion_hold: 2m", 1))
	e := NewEngine(cfg, EngineOptions{Now: c.now})
	_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 100)})
	for i := 0; i < 3; i++ {
		runTick(e, c, 1, 1)
	}
	for i := 0; i < 13; i++ { // v1 gone: only v2 reports
		_ = e.Append([]sample.Sample{requests("checkout", "v2", 200, 100)})
		c.advance(10 * time.Second)
		e.Evaluate()
	}
	deps := e.Deployments()
	if len(deps) != 1 || deps[0].EndReason != "promoted" || deps[0].EndedAt == nil {
		t.Fatalf("deployments = %+v", deps)
	}
	_ = e.Append([]sample.Sample{requests("checkout", "v3", 200, 100)})
	if deps := e.Deployments(); deps[0].Version != "v3" || deps[0].PreviousVersion != "v2" {
		t.Errorf("next deployment = %+v, want v2 -> v3", deps[0])
	}
}

// The regressed twin: a deployment that regressed is never promoted.
func TestEngineNoPromotionAfterRegression(t *testing.T) {
	c := newClock()
	cfg := mustParse(t, strings.Replace(engineConfig, "no_data_timeout: 1m", "no_data_timeout: 1m\n  promotion_hold: 2m", 1))
	e := NewEngine(cfg, EngineOptions{Now: c.now})
	_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 100)})
	for i := 0; i < 3+DefaultBurstTicks+2+4; i++ { // held, then outlasting a burst
		runTick(e, c, 10, 100)
	}
	for i := 0; i < 20; i++ {
		_ = e.Append([]sample.Sample{requests("checkout", "v2", 200, 100)})
		c.advance(10 * time.Second)
		e.Evaluate()
	}
	if deps := e.Deployments(); len(deps) != 1 || deps[0].EndReason != "" {
		t.Errorf("a regressed deployment was promoted: %+v", deps)
	}
}

const latencyConfig = `
global:
  evaluation_interval: 10s
  no_data_timeout: 1m
guards:
  - name: checkout
    service: checkout
    alpha: 0.01
    signals:
      - name: latency
        type: latency
        quantiles: [0.5, 0.99]
`

// hist is a classic histogram sample of n requests, a share slow of them
// slower than 1 s.
func hist(version string, n, slow float64) sample.Sample {
	return sample.Sample{Metric: "http.server.request.duration", Kind: sample.KindHistogram, Count: n,
		Labels:  sample.Labels{{Name: "service.name", Value: "checkout"}, {Name: "service.version", Value: version}},
		Buckets: []sample.Bucket{{UpperBound: 0.1, Count: n * 0.5}, {UpperBound: 1, Count: n*0.5 - n*slow}, {UpperBound: math.Inf(1), Count: n * slow}}}
}

func TestEngineLatency(t *testing.T) {
	for _, tc := range []struct {
		name      string
		slow      float64
		regressed bool
	}{{"slower", 0.05, true}, {"same", 0.005, false}} {
		t.Run(tc.name, func(t *testing.T) {
			c, rec := newClock(), &recorder{}
			e := NewEngine(mustParse(t, latencyConfig), EngineOptions{Handler: rec, Now: c.now})
			_ = e.Append([]sample.Sample{hist("v1", 100, 0.005)})
			for i := 0; i < 60; i++ {
				_ = e.Append([]sample.Sample{hist("v1", 1000, 0.005), hist("v2", 1000, tc.slow)})
				c.advance(10 * time.Second)
				e.Evaluate()
			}
			v := rec.last(t)
			p50, p99 := v.Signals[0], v.Signals[1]
			if p50.Boundary != 0.1 || p99.Boundary != 1 || p99.Candidate.Total < 50000 {
				t.Fatalf("arms: %+v", v.Signals)
			}
			if (v.State == StateRegressed) != tc.regressed || p50.State == StateRegressed || (p99.State == StateRegressed) != tc.regressed {
				t.Errorf("verdict %s: p50 %s, p99 %s (%s)", v.State, p50.State, p99.State, p99.Reason)
			}
		})
	}
}

// TestEngineBeforeAfter: an all-at-once release (v1 gone, v2 alone) is
// compared with the service's own window before the deployment.
func TestEngineBeforeAfter(t *testing.T) {
	for _, tc := range []struct {
		name      string
		canaryBad float64
		preTicks  int
		want      State
		kind      string
	}{
		{"worse", 40, 30, StateRegressed, "before_after"},
		{"same", 10, 30, StateInconclusive, "before_after"},
		{"window too small", 40, 0, StateNoData, "before_after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, rec := newClock(), &recorder{}
			e := NewEngine(mustParse(t, engineConfig), EngineOptions{Handler: rec, Now: c.now})
			_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 1)})
			for i := 0; i < tc.preTicks; i++ { // 30 ticks of v1 at 1 %: the before-window
				_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 990), requests("checkout", "v1", 500, 10)})
				c.advance(10 * time.Second)
				e.Evaluate()
			}
			for i := 0; i < 60; i++ { // v2 replaces v1 entirely
				_ = e.Append([]sample.Sample{requests("checkout", "v2", 200, 1000-tc.canaryBad), requests("checkout", "v2", 503, tc.canaryBad)})
				c.advance(10 * time.Second)
				e.Evaluate()
				if rec.last(t).State == StateRegressed {
					break
				}
			}
			v := rec.last(t)
			ev := v.Signals[0]
			if v.State != tc.want || ev.Kind != tc.kind {
				t.Fatalf("verdict %s (%s): %+v", v.State, ev.Kind, ev)
			}
			if tc.preTicks > 0 && (ev.Baseline.Total != float64(tc.preTicks*1000+1) || ev.Baseline.Version != "v1 (before)") {
				t.Errorf("before-window = %+v", ev.Baseline)
			}
		})
	}
}

// The cohort twin: while the stable version keeps reporting, auto stays on
// the cohort comparison.
func TestEngineAutoStaysCohort(t *testing.T) {
	c, rec := newClock(), &recorder{}
	e := NewEngine(mustParse(t, engineConfig), EngineOptions{Handler: rec, Now: c.now})
	_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 1)})
	for i := 0; i < 5; i++ {
		runTick(e, c, 10, 10)
	}
	if ev := rec.last(t).Signals[0]; ev.Kind != "sequential" {
		t.Errorf("kind %s, want the cohort test", ev.Kind)
	}
}

// TestEngineRuleAndSLO: Argo-style rule checks and the SLO burn-rate rule,
// labelled rule-based, each with its healthy twin.
func TestEngineRuleAndSLO(t *testing.T) {
	cfg := func(signal string) string {
		return strings.Replace(engineConfig, "      - name: errors\n", signal, 1)
	}
	rule := cfg("      - name: errors\n        rule: {max_ratio: 1.5, interval: 1m, failure_limit: 3}\n")
	slo := cfg("      - name: availability\n        type: slo\n        objective: 0.999\n")
	for _, tc := range []struct {
		name, config string
		canaryBad    float64
		want         State
		reason       string
	}{
		{"rule fails", rule, 30, StateRegressed, "rule-based: 3 consecutive failed checks of 1m0s"},
		{"rule passes", rule, 10, StateInconclusive, "rule-based: 0 of"},
		{"slo burns", slo, 50, StateRegressed, "rule-based SLO burn"},
		{"slo within budget", slo, 0, StateInconclusive, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, rec := newClock(), &recorder{}
			e := NewEngine(mustParse(t, tc.config), EngineOptions{Handler: rec, Now: c.now})
			_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 1)})
			for i := 0; i < 40; i++ { // 400 s: six rule checks, the 5-minute window full
				runTick(e, c, 10, tc.canaryBad)
			}
			v := rec.last(t)
			ev := v.Signals[0]
			if v.State != tc.want || ev.Kind != "rule" || !strings.HasPrefix(ev.Reason, tc.reason) {
				t.Errorf("verdict %s, evidence %s: %q", v.State, ev.Kind, ev.Reason)
			}
		})
	}
}

func gauge(version string, v float64) sample.Sample {
	return sample.Sample{Metric: "db.client.connection.count", Kind: sample.KindGauge, Value: v,
		Labels: sample.Labels{{Name: "service.name", Value: "checkout"}, {Name: "service.version", Value: version}}}
}

func failedWrites(version string, v float64) sample.Sample {
	return sample.Sample{Metric: "db.client.failed_writes", Kind: sample.KindCounter, Value: v,
		Labels: sample.Labels{{Name: "service.name", Value: "checkout"}, {Name: "service.version", Value: version}}}
}

// TestEngineSaturationAndIntegrity: a connection pool saturated more often
// on the candidate (20 pods a version, each reading saturated at random:
// 40 % against 10 %), and data-integrity failures per request, each with
// its healthy twin.
func TestEngineSaturationAndIntegrity(t *testing.T) {
	sat := strings.Replace(engineConfig, "      - name: errors\n",
		"      - name: pool\n        type: saturation\n        metric: db.client.connection.count\n        level: 90\n", 1)
	integ := strings.Replace(engineConfig, "      - name: errors\n",
		"      - name: writes\n        type: data_integrity\n        metric: db.client.failed_writes\n        total_metric: http.server.request.duration\n", 1)
	for _, tc := range []struct {
		name, config string
		bad          bool
	}{{"saturation worse", sat, true}, {"saturation same", sat, false}, {"integrity worse", integ, true}, {"integrity same", integ, false}} {
		t.Run(tc.name, func(t *testing.T) {
			c, rec := newClock(), &recorder{}
			e := NewEngine(mustParse(t, tc.config), EngineOptions{Handler: rec, Now: c.now})
			_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 1), gauge("v1", 10)})
			rng := rand.New(rand.NewPCG(5, 5))
			reading := func(p float64) float64 {
				if rng.Float64() < p {
					return 95
				}
				return 50
			}
			for i := 0; i < 60 && (len(rec.verdicts) == 0 || rec.last(t).State != StateRegressed); i++ {
				var batch []sample.Sample
				for k := 0; k < 20; k++ { // 20 pods' readings a tick, each saturated at random
					p2 := 0.1
					if tc.bad {
						p2 = 0.4
					}
					pod := sample.Label{Name: "k8s.pod.name", Value: "pod-" + strconv.Itoa(k)}
					g1, g2 := gauge("v1", reading(0.1)), gauge("v2", reading(p2))
					g1.Labels = append(g1.Labels, pod).Sort()
					g2.Labels = append(g2.Labels, pod).Sort()
					batch = append(batch, g1, g2)
				}
				fails := 2.0
				if tc.bad {
					fails = 10
				}
				batch = append(batch, requests("checkout", "v1", 200, 1000), requests("checkout", "v2", 200, 1000),
					failedWrites("v1", 2), failedWrites("v2", fails))
				_ = e.Append(batch)
				c.advance(10 * time.Second)
				e.Evaluate()
			}
			if v := rec.last(t); (v.State == StateRegressed) != tc.bad {
				t.Errorf("verdict %s: %+v", v.State, v.Signals[0])
			}
		})
	}
}

// TestEngineThroughput: a canary at a declared 10 % weight that serves only
// 5 % of the successful requests has regressed; one serving its share has
// not, nor one that a load balancer sends a little less than its weight.
func TestEngineThroughput(t *testing.T) {
	cfg := strings.Replace(engineConfig, "      - name: errors\n", "      - name: served\n        type: throughput\n", 1)
	for _, tc := range []struct {
		name   string
		canary float64
		weight float64
		want   State
	}{{"drop", 50, 10, StateRegressed}, {"share kept", 100, 10, StateInconclusive}, {"no weight", 50, 0, StateNoData},
		// Declared 5 %, realised 4.3 %: within the weight's tolerance
		// (ThroughputWeightTolerance); its twin at half the share is not.
		{"realised below weight", 900 * 0.043 / 0.957, 5, StateInconclusive}, {"half the weight", 900 * 0.025 / 0.975, 5, StateRegressed}} {
		t.Run(tc.name, func(t *testing.T) {
			c, rec := newClock(), &recorder{}
			e := NewEngine(mustParse(t, cfg), EngineOptions{Handler: rec, Now: c.now})
			if _, err := e.Announce(Deployment{Service: "checkout", Version: "v2", PreviousVersion: "v1", Weight: tc.weight}); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 360; i++ { // an hour
				_ = e.Append([]sample.Sample{requests("checkout", "v1", 200, 900), requests("checkout", "v2", 200, tc.canary)})
				c.advance(10 * time.Second)
				e.Evaluate()
			}
			if v := rec.last(t); v.State != tc.want {
				t.Errorf("verdict %s: %+v", v.State, v.Signals[0])
			}
		})
	}
}
