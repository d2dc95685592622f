package detector

import (
	"math/rand"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rollguard/rollguard/sample"
)

// concurrentConfig has two guards on svc-a — a, and a-canary, which reads
// its version from another label, so that one sample can be routed to a
// and need the tracker for a-canary — one on svc-b, and one on svc-c, which
// has no deployment (its stable traffic fills the before-window).
const concurrentConfig = `
global:
  evaluation_interval: 10s
  no_data_timeout: 1h
  new_version_hold: 1h
guards:
  - name: a
    service: svc-a
    baseline: {mode: cohort}
    signals: [{name: errors}]
  - name: a-canary
    service: svc-a
    version_label: canary.version
    baseline: {mode: cohort}
    signals: [{name: errors}]
  - name: b
    service: svc-b
    baseline: {mode: cohort}
    signals: [{name: errors}]
  - name: c
    service: svc-c
    baseline: {mode: cohort, window: 24h}
    signals: [{name: errors}]
`

// concurrentReload adds a guard of another service: reloading it swaps
// the routing table while leaving the other guards' runs as they are.
const concurrentReload = concurrentConfig + `
  - name: z
    service: svc-z
    signals: [{name: errors}]
`

// sent is what a worker's requests carried, as each guard must count it.
type sent struct {
	total, bad [2]float64 // by cohort, for a and b
	b          bool       // whether b's totals are counted in total, bad
	history    [2]float64 // total and bad of svc-c's stable version
	routed     float64    // samples routed to a guard run
	invalid    float64
	retired    float64 // samples of svc-b's retired version
}

// workerRequests are one worker's requests, seeded by the worker: svc-a's
// two versions in every request (the guard every worker folds into), svc-b's
// for even workers, svc-c's stable version, other services' traffic and an
// invalid sample; every fifth request has, in its middle, a sample that a
// routes and a-canary needs the tracker for (an unannounced version), so
// the rest of the request goes through under the exclusive lock. Even
// workers also send svc-b's retired version, dropped under the shared lock.
func workerRequests(w, n int) ([][]sample.Sample, sent) {
	rng := rand.New(rand.NewSource(int64(w) + 1))
	var want sent
	want.b = w%2 == 0
	reqs := make([][]sample.Sample, n)
	for r := range reqs {
		var req []sample.Sample
		add := func(svc, version string, cohort int) {
			status, count := 200, float64(1+rng.Intn(9))
			if rng.Intn(4) == 0 {
				status = 500
			}
			req = append(req, requests(svc, version, status, count))
			switch svc {
			case "svc-a", "svc-b":
				want.total[cohort] += count
				if status >= 500 {
					want.bad[cohort] += count
				}
				want.routed++
			case "svc-c":
				want.history[0] += count
				if status >= 500 {
					want.history[1] += count
				}
			}
		}
		for i := 0; i < 10; i++ {
			add("svc-a", "v1", baseline)
			add("svc-a", "v2", candidate)
			if want.b {
				add("svc-b", "v1", baseline)
				add("svc-b", "v2", candidate)
				req = append(req, requests("svc-b", "v0", 200, 1))
				want.retired++
			}
			add("svc-c", "v1", baseline)
			add("other-"+strconv.Itoa(i), "v1", baseline)
			if i == 5 && r%5 == 0 {
				add("svc-a", "v2", candidate)
				last := &req[len(req)-1]
				last.Labels = append(last.Labels, sample.Label{Name: "canary.version", Value: "v3"})
			}
		}
		bad := requests("svc-a", "v1", 200, 1)
		bad.Count = -1 // refused by usable, counted as invalid
		req = append(req, bad)
		want.invalid++
		reqs[r] = req
	}
	return reqs, want
}

// TestEngineConcurrentAppendCountsEverything sends the same requests from
// several workers one after another (the twin) and all at once, while
// Evaluate closes batches, a reload swaps the guards in and out and
// checkpoints are taken: every sample must be counted once, in the guard
// run or before-window it belongs to. Run it with -race.
func TestEngineConcurrentAppendCountsEverything(t *testing.T) {
	const workers, perWorker = 8, 150
	for _, concurrent := range []bool{false, true} {
		name := "one-after-another"
		if concurrent {
			name = "all-at-once"
		}
		t.Run(name, func(t *testing.T) {
			var clock atomic.Int64
			clock.Store(newClock().t.UnixNano())
			now := func() time.Time { return time.Unix(0, clock.Load()).UTC() }
			cfg, reload := mustParse(t, concurrentConfig), mustParse(t, concurrentReload)
			e := NewEngine(cfg, EngineOptions{Now: now, Registerer: prometheus.NewRegistry()})
			for _, d := range []Deployment{
				{Service: "svc-b", Version: "v1", PreviousVersion: "v0"},
				{Service: "svc-b", Version: "v2", PreviousVersion: "v1"}, // v0 retires
				{Service: "svc-a", Version: "v2", PreviousVersion: "v1"},
			} {
				if _, err := e.Announce(d); err != nil {
					t.Fatal(err)
				}
			}
			var want sent
			reqs := make([][][]sample.Sample, workers)
			for w := range reqs {
				var got sent
				reqs[w], got = workerRequests(w, perWorker)
				for c := range 2 {
					want.total[c] += got.total[c]
					want.bad[c] += got.bad[c]
					want.history[c] += got.history[c]
				}
				want.routed += got.routed
				want.invalid += got.invalid
				want.retired += got.retired
			}
			send := func(w int) {
				for _, req := range reqs[w] {
					_ = e.Append(req)
				}
			}
			if !concurrent {
				for w := range workers {
					send(w)
				}
			} else {
				var wg, others sync.WaitGroup
				var evaluations, reloads atomic.Int64
				stop := make(chan struct{})
				others.Add(2)
				go func() { // the evaluator, and a reader of checkpoints
					defer others.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						clock.Add(int64(100 * time.Millisecond))
						e.Evaluate()
						_ = e.TestStates()
						evaluations.Add(1)
					}
				}()
				go func() { // reloads, each swapping the routing table
					defer others.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						if i%2 == 0 {
							e.ApplyConfig(reload)
						} else {
							e.ApplyConfig(cfg)
						}
						reloads.Add(1)
					}
				}()
				for w := range workers {
					wg.Add(1)
					go func() { defer wg.Done(); send(w) }()
				}
				wg.Wait()
				close(stop)
				others.Wait()
				t.Logf("%d evaluations and %d reloads while %d workers sent", evaluations.Load(), reloads.Load(), workers)
			}

			e.mu.Lock()
			defer e.mu.Unlock()
			var got sent
			for _, g := range []string{"a", "b"} {
				svc := "svc-" + g
				d := e.deployments[svc]
				if d == nil || d.Version != "v2" {
					t.Fatalf("%s: deployment %+v, want v1 → v2 under way", svc, d)
				}
				r := d.guards[g]
				if r == nil {
					t.Fatalf("guard %s has no run", g)
				}
				sr := r.signals[0]
				test := sr.arms[0].test
				got.total[candidate] += test.CandidateTotal + sr.cur[candidate].total
				got.total[baseline] += test.BaselineTotal + sr.cur[baseline].total
				got.bad[candidate] += test.CandidateBad + sr.cur[candidate].bad
				got.bad[baseline] += test.BaselineBad + sr.cur[baseline].bad
			}
			if r := e.deployments["svc-a"].guards["a-canary"]; r != nil {
				if sr := r.signals[0]; sr.arms[0].test.CandidateTotal+sr.arms[0].test.BaselineTotal+sr.cur[0].total+sr.cur[1].total != 0 {
					t.Errorf("a-canary counted traffic, but every sample lacked its version or had an unconfirmed one")
				}
			}
			if a := e.deployments["svc-a"].guards["a"].signals[0]; concurrent && a.arms[0].test.CandidateTotal == 0 {
				t.Error("no batch was closed while the workers sent: nothing was interleaved")
			}
			h := e.histories["c"]
			if h == nil {
				t.Fatal("svc-c has no before-window")
			}
			for _, st := range h.ring[0] {
				got.history[0] += st.t.total
				got.history[1] += st.t.bad
			}
			got.history[0] += h.signals[0].cur[baseline].total
			got.history[1] += h.signals[0].cur[baseline].bad
			got.routed = testutil.ToFloat64(e.metrics.routed)
			got.invalid = testutil.ToFloat64(e.metrics.dropped.WithLabelValues("invalid_value"))
			got.retired = testutil.ToFloat64(e.metrics.dropped.WithLabelValues(DropRetired))
			got.b, want.b = false, false
			if got != want {
				t.Errorf("counted %+v\n          sent %+v", got, want)
			}
			if n := testutil.ToFloat64(e.metrics.unconfirmed.WithLabelValues("svc-a")); n == 0 {
				t.Error("no sample of the unannounced version reached the tracker: the exclusive path was not taken")
			}
		})
	}
}
