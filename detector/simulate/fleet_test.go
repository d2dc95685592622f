package simulate

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/detector"
)

// fleetSums plays runs runs of ticks ticks and sums bad events and requests
// per version.
func fleetSums(f Fleet, runs, ticks int, seed uint64) (x, nc, y, nb float64) {
	for run := range runs {
		r := NewFleetRun(f, seed, uint64(run))
		for range ticks {
			a, b, c, d := r.Next().Sums()
			x, nc, y, nb = x+a, nc+b, y+c, nb+d
		}
	}
	return x, nc, y, nb
}

// relWithin fails when got is more than tol (relative) from want.
func relWithin(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got/want-1) > tol {
		t.Errorf("%s = %.5g, want %.5g ± %.0f %%", what, got, want, 100*tol)
	}
}

func TestFleetCleanMatchesParameters(t *testing.T) {
	f := DefaultFleet()
	f.Theta = 2
	const ticks = 2000
	r := NewFleetRun(f, 1, 0)
	var x, nc, y, nb float64
	for range ticks {
		k := r.Next()
		if len(k.Candidate) != 1 || len(k.Baseline) != 19 {
			t.Fatalf("blocks: %d candidate, %d baseline; want 1 and 19", len(k.Candidate), len(k.Baseline))
		}
		a, b, c, d := k.Sums()
		x, nc, y, nb = x+a, nc+b, y+c, nb+d
	}
	// 10 requests/s per pod, 10 s ticks: Poisson(100) per pod per tick.
	within(t, "candidate requests per tick", nc/ticks, 100, math.Sqrt(100.0/ticks))
	within(t, "baseline requests per tick", nb/ticks, 1900, math.Sqrt(1900.0/ticks))
	proportion(t, "candidate error rate (θ = 2)", int(x), int(nc), 0.02)
	proportion(t, "baseline error rate", int(y), int(nb), 0.01)

	// Ten candidate pods of twenty: half the traffic.
	f.CandidatePods = 10
	_, nc, _, nb = fleetSums(f, 1, 500, 2)
	relWithin(t, "50 % share", nc/(nc+nb), 0.5, 0.01)
}

func TestFleetChangeAt(t *testing.T) {
	f := DefaultFleet()
	f.Theta, f.ChangeAt, f.CandidatePods = 3, 1000, 5
	r := NewFleetRun(f, 3, 0)
	var before, after [2]float64
	for i := range 2000 {
		x, nc, _, _ := r.Next().Sums()
		if i < f.ChangeAt {
			before[0], before[1] = before[0]+x, before[1]+nc
		} else {
			after[0], after[1] = after[0]+x, after[1]+nc
		}
	}
	proportion(t, "candidate error rate before the change", int(before[0]), int(before[1]), 0.01)
	proportion(t, "candidate error rate after the change", int(after[0]), int(after[1]), 0.03)
}

// Every count nuisance keeps the fleet's mean error rate at about p₀.
func TestFleetNuisancesPreserveMeanErrorRate(t *testing.T) {
	p0 := 0.01
	for _, c := range []struct {
		name string
		n    Nuisance
		want float64
		tol  float64
	}{
		{"clean", Nuisance{}, p0, 0.03},
		{"retries", RetryClusters(), p0 / (1 + 2*p0/3), 0.04},
		{"pod offsets", PodOffsets(), p0, 0.04},
		{"tick noise", TickNoise(), p0, 0.04},
		// One pod of twenty ×10 for a minute every two hours: +9·(1/120)/20.
		{"bursty pods", BurstyPods(), p0 * (1 + 9.0/120/20), 0.04},
	} {
		f := DefaultFleet()
		f.Nuisance = c.n
		x, nc, y, nb := fleetSums(f, 10, 720, 4)
		relWithin(t, c.name+": error rate, both versions", (x+y)/(nc+nb), c.want, c.tol)
	}
}

func TestFleetRetriesComeInClusters(t *testing.T) {
	f := DefaultFleet()
	f.Nuisance = RetryClusters()
	r := NewFleetRun(f, 5, 0)
	var bad, total, reqs float64
	for range 500 {
		r.Next()
		for _, b := range r.blocks {
			if math.Mod(b.Bad, 3) != 0 {
				t.Fatalf("block %+v: bad events not a multiple of 3", b)
			}
			bad += b.Bad
			total += b.Total
			reqs += b.Total - 2*b.Bad/3 // the requests before retries
		}
	}
	// The retries count in the total: two per cluster.
	relWithin(t, "requests before retries per pod-tick", reqs/(500*20), 100, 0.01)
	relWithin(t, "errors over requests before retries", bad/reqs, 0.01, 0.05)
}

func TestFleetPodOffsets(t *testing.T) {
	f := DefaultFleet()
	f.Nuisance = PodOffsets()
	var logs []float64
	var sum float64
	for run := range 200 {
		r := NewFleetRun(f, 6, uint64(run))
		for i := range f.Pods {
			o := r.PodOffset(i)
			sum += o
			logs = append(logs, math.Log(o))
		}
	}
	n := float64(len(logs))
	within(t, "mean pod offset", sum/n, 1, 0.2/math.Sqrt(n))
	var m, v float64
	for _, l := range logs {
		m += l / n
	}
	for _, l := range logs {
		v += (l - m) * (l - m) / (n - 1)
	}
	relWithin(t, "sd of log offsets", math.Sqrt(v), 0.2, 0.1)

	// The offsets persist: a pod's error rate over a long run follows its own.
	r := NewFleetRun(f, 7, 0)
	var bad, tot [20]float64
	for range 3000 {
		r.Next()
		for i, b := range r.blocks {
			bad[i] += b.Bad
			tot[i] += b.Total
		}
	}
	for i := range bad {
		proportion(t, "pod error rate against its offset", int(bad[i]), int(tot[i]), 0.01*r.PodOffset(i))
	}
	if r.PodOffset(0) == r.PodOffset(1) {
		t.Error("pods share an offset")
	}
}

func TestFleetTickNoiseIsOverdispersed(t *testing.T) {
	// Per-pod per-tick counts: Poisson(100·p) with p log-normal (σ = 0.7)
	// has variance 1 + (e^{σ²} − 1) ≈ 1.63 at mean 1; clean it is ≈ 1.
	for _, c := range []struct {
		n    Nuisance
		want float64
	}{{Nuisance{}, 1}, {TickNoise(), 1 + math.Expm1(0.49)}} {
		f := DefaultFleet()
		f.Nuisance = c.n
		r := NewFleetRun(f, 8, 0)
		var s, s2, n float64
		for range 2000 {
			for _, b := range r.Next().Baseline {
				s += b.Bad
				s2 += b.Bad * b.Bad
				n++
			}
		}
		mean := s / n
		relWithin(t, "mean bad per pod-tick", mean, 1, 0.03)
		relWithin(t, "variance of bad per pod-tick", s2/n-mean*mean, c.want, 0.06)
	}
}

func TestFleetBursts(t *testing.T) {
	// The bursts are a fleet-wide process: two pods (10 rps each) see the
	// same bursts as twenty, at a tenth of the cost.
	f := DefaultFleet()
	f.Pods, f.RequestsPerSecond = 2, 20
	f.Nuisance = BurstyPods()
	const runs, ticks = 200, FleetWatchTicks
	var count, onCandidate int
	var bad, tot float64 // in bursting pod-ticks
	for run := range runs {
		r := NewFleetRun(f, 9, uint64(run))
		for tk := range ticks {
			r.Next()
			for i, b := range r.blocks {
				if tk < r.burstUntil[i] {
					bad += b.Bad
					tot += b.Total
				}
			}
		}
		for _, b := range r.Bursts() {
			if b.Pod < 0 || b.Pod >= f.Pods || b.Tick < 0 || b.Tick >= ticks {
				t.Fatalf("burst %+v out of range", b)
			}
			if b.Pod < f.CandidatePods {
				onCandidate++
			}
		}
		count += len(r.Bursts())
	}
	// 1 per 2 h over 6 h: 3 per run, Poisson.
	within(t, "bursts per run", float64(count)/runs, 3, math.Sqrt(3.0/runs))
	// Uniform over the pods: half on the candidate.
	within(t, "share of bursts on the candidate pod", float64(onCandidate)/float64(count), 0.5, math.Sqrt(0.25/float64(count)))
	proportion(t, "error rate of a bursting pod", int(bad), int(tot), 0.1)
	// A burst lasts one minute: 6 ticks (fewer only at the run's end or
	// when merged with another on the same pod).
	within(t, "bursting pod-ticks per burst", tot/100/float64(count), 6, 0.1)
}

func TestFleetOutageCoverage(t *testing.T) {
	f := DefaultFleet()
	f.Nuisance = MisalignedOutages()
	r := NewFleetRun(f, 10, 0)
	r.nextOutage = 12 // one outage at 12 s; the next hours away
	r.f.Nuisance.OutagesPerHour = 1e-9
	// Candidate [7, 27): 0.3, 1, 0.7 of ticks 0–2; baseline [12, 32): 0, 0.8, 1, 0.2 of ticks 0–3.
	wantCand := []float64{0.3, 1, 0.7, 0, 0}
	wantBase := []float64{0, 0.8, 1, 0.2, 0}
	for i := range wantCand {
		c, b := r.outagePass(float64(10*i), float64(10*i+10))
		if math.Abs(c-(1-0.5*wantCand[i])) > 1e-12 || math.Abs(b-(1-0.5*wantBase[i])) > 1e-12 {
			t.Errorf("tick %d: pass %.3f (candidate), %.3f (baseline); want %.3f and %.3f", i, c, b, 1-0.5*wantCand[i], 1-0.5*wantBase[i])
		}
	}
	if len(r.outages) != 0 {
		t.Errorf("%d outages still live after their end", len(r.outages))
	}
}

// The candidate sees each outage 5 s before the baseline: the centroid of
// each version's excess errors around an isolated outage is 5 s apart.
func TestFleetOutagesLeadOnCandidate(t *testing.T) {
	f := DefaultFleet()
	f.Nuisance = MisalignedOutages()
	f.CandidatePods = 10 // half the load each, for equal precision
	const runs, ticks = 20, 1080
	var centroid [2]float64 // Σ excess·(tick middle − start), per version
	var excess [2]float64
	outages, isolated := 0, 0
	for run := range runs {
		r := NewFleetRun(f, 11, uint64(run))
		var rate [2][]float64 // excess errors per tick
		for range ticks {
			x, nc, y, nb := r.Next().Sums()
			rate[0] = append(rate[0], x-0.01*nc)
			rate[1] = append(rate[1], y-0.01*nb)
		}
		starts := r.Outages()
		outages += len(starts)
		for j, d := range starts {
			s := d.Seconds()
			// Isolated: no other outage within a minute either side.
			if (j > 0 && s-starts[j-1].Seconds() < 60) || (j+1 < len(starts) && starts[j+1].Seconds()-s < 60) {
				continue
			}
			first, last := int((s-20)/10), int((s+40)/10)
			if first < 0 || last >= ticks {
				continue
			}
			isolated++
			for tk := first; tk <= last; tk++ {
				mid := float64(tk)*10 + 5
				for v := range 2 {
					centroid[v] += rate[v][tk] * (mid - s)
					excess[v] += rate[v][tk]
				}
			}
		}
	}
	// 6 an hour.
	within(t, "outages per hour", float64(outages)/(runs*3), 6, math.Sqrt(6.0/(runs*3)))
	// Windows [s−5, s+15) and [s, s+20): centres s+5 and s+10.
	if c := centroid[0] / excess[0]; math.Abs(c-5) > 1 {
		t.Errorf("candidate's outage errors centred %.2f s after the outage starts, want 5", c)
	}
	if c := centroid[1] / excess[1]; math.Abs(c-10) > 1 {
		t.Errorf("baseline's outage errors centred %.2f s after the outage starts, want 10", c)
	}
	// Half the requests fail over 20 s: 0.5·0.99 of 2 ticks' 1000 requests
	// per outage and version.
	relWithin(t, "candidate's excess errors per isolated outage", excess[0]/float64(isolated), 990, 0.05)
	relWithin(t, "baseline's excess errors per isolated outage", excess[1]/float64(isolated), 990, 0.05)
}

func TestFleetGaugeAR1(t *testing.T) {
	for _, phi := range []float64{0.9, 0.99} {
		f := DefaultFleet()
		f.Nuisance = SaturationGauge(phi)
		const runs, ticks = 20, FleetWatchTicks
		var sxy, sxx, bad, n, badPairs, pairs float64
		for run := range runs {
			r := NewFleetRun(f, 12, uint64(run))
			prev := slices.Clone(r.gauge)
			var prevBad []float64
			for range ticks {
				r.Next()
				blocks := r.blocks
				for i, g := range r.gauge {
					sxy += g * prev[i]
					sxx += prev[i] * prev[i]
					if blocks[i].Total != 1 || (blocks[i].Bad != 0 && blocks[i].Bad != 1) || (blocks[i].Bad == 1) != (g > z90) {
						t.Fatalf("block %+v for gauge %.3f", blocks[i], g)
					}
					bad += blocks[i].Bad
					n++
					if prevBad != nil && prevBad[i] == 1 {
						badPairs += blocks[i].Bad
						pairs++
					}
				}
				copy(prev, r.gauge)
				prevBad = make([]float64, len(blocks))
				for i, b := range blocks {
					prevBad[i] = b.Bad
				}
			}
		}
		// Lag-1 regression slope of a stationary AR(1) is φ.
		if got := sxy / sxx; math.Abs(got-phi) > 0.01 {
			t.Errorf("φ = %g: lag-1 slope %.4f", phi, got)
		}
		// 10 % of readings above the 90th percentile (with φ = 0.99 the
		// effective sample is small: a wider band).
		if got := bad / n; math.Abs(got-0.1) > 0.02 {
			t.Errorf("φ = %g: %.3f of readings bad, want 0.1", phi, got)
		}
		// Bad readings come in runs: P(bad | bad before) is far above 0.1.
		if got := badPairs / pairs; got < 0.5 {
			t.Errorf("φ = %g: P(bad | previous bad) = %.3f, want autocorrelated (> 0.5)", phi, got)
		}
	}
}

func TestFleetDeterministicInSeed(t *testing.T) {
	f := DefaultFleet()
	f.CandidatePods = 3
	f.Theta = 1.5
	f.Nuisance = Nuisance{RetryCluster: 3, BurstsPerHour: 20, BurstFactor: 10, BurstLength: time.Minute,
		PodOffsetSigma: 0.2, TickNoiseSigma: 0.7, OutagesPerHour: 30, OutageFailure: 0.5, OutageLength: 20 * time.Second, OutageLead: 5 * time.Second}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	play := func(seed1, seed2 uint64) []detector.Block {
		r := NewFleetRun(f, seed1, seed2)
		var out []detector.Block
		for range 300 {
			k := r.Next()
			out = append(out, k.Candidate...)
			out = append(out, k.Baseline...)
		}
		return out
	}
	a, b, c := play(1, 2), play(1, 2), play(1, 3)
	if !slices.Equal(a, b) {
		t.Error("equal seeds gave different ticks")
	}
	if slices.Equal(a, c) {
		t.Error("different seeds gave equal ticks")
	}
	g := DefaultFleet()
	g.Nuisance = SaturationGauge(0.9)
	r1, r2 := NewFleetRun(g, 5, 5), NewFleetRun(g, 5, 5)
	for range 100 {
		if !slices.Equal(r1.Next().Baseline, r2.Next().Baseline) {
			t.Fatal("gauge: equal seeds gave different ticks")
		}
	}
}

func TestFleetValidate(t *testing.T) {
	ok := DefaultFleet()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		field string
		edit  func(*Fleet)
	}{
		{"Pods", func(f *Fleet) { f.Pods = 1 }},
		{"CandidatePods", func(f *Fleet) { f.CandidatePods = 20 }},
		{"CandidatePods", func(f *Fleet) { f.CandidatePods = 0 }},
		{"Tick", func(f *Fleet) { f.Tick = 0 }},
		{"ChangeAt", func(f *Fleet) { f.ChangeAt = -1 }},
		{"RequestsPerSecond", func(f *Fleet) { f.RequestsPerSecond = 0 }},
		{"Theta", func(f *Fleet) { f.Theta = 100 }},
		{"bursts", func(f *Fleet) { f.Nuisance.BurstsPerHour = 1 }},
		{"outages", func(f *Fleet) { f.Nuisance.OutagesPerHour = 1 }},
		{"gauge", func(f *Fleet) { f.Nuisance = SaturationGauge(0.9); f.Theta = 2 }},
		{"GaugePhi", func(f *Fleet) { f.Nuisance = SaturationGauge(1) }},
	} {
		f := DefaultFleet()
		c.edit(&f)
		if err := f.Validate(); err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: Validate() = %v, want an error naming it", c.field, err)
		}
	}
}

func TestFleetSumsAndSummedDetector(t *testing.T) {
	k := FleetTick{
		Candidate: []detector.Block{{Bad: 1, Total: 10}, {Bad: 2, Total: 20}},
		Baseline:  []detector.Block{{Bad: 3, Total: 30}},
	}
	if got, want := k.Sum(), (Tick{CandidateRequests: 30, CandidateBad: 3, BaselineRequests: 30, BaselineBad: 3}); got != want {
		t.Errorf("Sum() = %+v, want %+v", got, want)
	}
	// The oracle on the sums: a tick with all requests bad alarms at once.
	d := Summed{NewOracleSPRT(0.01, 0.02, 0.01)}
	if !d.ObserveFleet(FleetTick{Candidate: []detector.Block{{Bad: 100, Total: 100}}, Baseline: []detector.Block{{Total: 100}}}) {
		t.Error("oracle fed 100 failures of 100 did not alarm")
	}
}

// A restart from a checkpoint goes on with the same evidence: the alarm
// comes at the same tick as without restarts.
func TestFleetRollguardRestarts(t *testing.T) {
	f := DefaultFleet()
	f.Theta = 2
	sc := FleetScenario{
		Name: "restarts", Fleet: f, Runs: 6, Ticks: 720, Seed: 13,
		Contenders: []FleetContender{
			{"pods", func() FleetDetector { return NewFleetRollguard(1.1, 0.01, true) }},
			{"pods, checkpointed every 5 ticks", func() FleetDetector { return NewFleetRollguard(1.1, 0.01, true).WithRestarts(5, true) }},
			{"summed", func() FleetDetector { return NewFleetRollguard(1.1, 0.01, false) }},
			{"summed, checkpointed every 7 ticks", func() FleetDetector { return NewFleetRollguard(1.1, 0.01, false).WithRestarts(7, true) }},
		},
	}
	res, err := RunFleet(context.Background(), []FleetScenario{sc}, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := res[0]
	if a, b := r.Contender("pods"), r.Contender("pods, checkpointed every 5 ticks"); !slices.Equal(a, b) {
		t.Errorf("checkpointed restarts changed the alarms (pods): %v without, %v with", a, b)
	}
	if a, b := r.Contender("summed"), r.Contender("summed, checkpointed every 7 ticks"); !slices.Equal(a, b) {
		t.Errorf("checkpointed restarts changed the alarms (summed): %v without, %v with", a, b)
	}
	if r.Contender("nobody") != nil {
		t.Error("Contender of an unknown name is not nil")
	}
}

func TestRunFleetIndependentOfWorkers(t *testing.T) {
	f := DefaultFleet()
	f.Theta = 3
	f.Nuisance = BurstyPods()
	sc := FleetScenario{
		Name: "workers", Fleet: f, Runs: 60, Ticks: 200, Seed: 14,
		Contenders: []FleetContender{
			{"summed", func() FleetDetector { return NewFleetRollguard(1.1, 0.01, false) }},
			{"oracle", func() FleetDetector { return Summed{NewOracleSPRT(0.01, 0.03, 0.01)} }},
		},
	}
	a, err := RunFleet(context.Background(), []FleetScenario{sc}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := RunFleet(context.Background(), []FleetScenario{sc}, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	for c := range sc.Contenders {
		if !slices.Equal(a[0].Alarms[c], b[0].Alarms[c]) {
			t.Errorf("contender %d: alarms depend on the number of workers", c)
		}
	}
	if d := Summarise(a[0].Alarms[1]); d.Detected < 50 {
		t.Errorf("oracle caught θ = 3 in %d of 60 runs of 200 ticks", d.Detected)
	}
	bad := sc
	bad.Fleet.Pods = 1
	if _, err := RunFleet(context.Background(), []FleetScenario{bad}, 1, nil); err == nil {
		t.Error("RunFleet accepted an invalid fleet")
	}
}
