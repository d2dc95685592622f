package scrape

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/detector"
)

// version is one version of the checkout service, instrumented with
// client_golang the way a Go service is.
type version struct {
	requests *prometheus.CounterVec
	srv      *httptest.Server
}

func newVersion(t *testing.T) *version {
	reg := prometheus.NewRegistry()
	v := &version{requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "http_requests_total", Help: "Requests served.",
	}, []string{"code"})}
	reg.MustRegister(v.requests)
	v.srv = httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	t.Cleanup(v.srv.Close)
	return v
}

// serve records n requests, bad of them failing with a 500.
func (v *version) serve(n, bad float64) {
	v.requests.WithLabelValues("200").Add(n - bad)
	v.requests.WithLabelValues("500").Add(bad)
}

type verdicts struct{ all []detector.GuardVerdict }

func (r *verdicts) HandleVerdict(v detector.GuardVerdict) { r.all = append(r.all, v) }

// Detection end to end through scraping: two versions of a service expose
// http_requests_total{code} with client_golang, the sidecar scrapes them and
// the real detector engine compares them. A canary at ten times the stable
// error rate regresses; its healthy twin, at the same rate, does not.
func TestScrapeDetectsRegression(t *testing.T) {
	tests := []struct {
		name          string
		canaryBad     float64 // per 1000 requests per round; the stable version fails 10
		wantRegressed bool
	}{
		{"canary at 10% errors regresses", 100, true},
		{"healthy twin at 1% does not", 10, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v1, v2 := newVersion(t), newVersion(t)
			doc := func(withCanary bool) string {
				s := fmt.Sprintf(`
scrape_configs:
  - job_name: checkout
    scrape_interval: 1h
    static_configs:
      - targets: [%s]
        labels: {version: v1}
`, hostOf(v1.srv))
				if withCanary {
					s += fmt.Sprintf("      - targets: [%s]\n        labels: {version: v2}\n", hostOf(v2.srv))
				}
				return s + `
guards:
  - name: checkout
    service: checkout
    service_label: job
    version_label: version
    signals:
      - name: errors
        metric: http_requests_total
        status_label: code
`
			}
			cfg, err := configs.Parse([]byte(doc(true)))
			if err != nil {
				t.Fatal(err)
			}
			now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
			rec := &verdicts{}
			engine := detector.NewEngine(cfg, detector.EngineOptions{Handler: rec, Now: func() time.Time { return now }})
			m := NewManager(Config{Appender: engine, Filter: engine, Logger: testLogger(t), Registerer: prometheus.NewRegistry()})
			t.Cleanup(m.Stop)
			round := func() {
				t.Helper()
				if err := m.ScrapeNow(context.Background()); err != nil {
					t.Fatal(err)
				}
				now = now.Add(10 * time.Second)
				engine.Evaluate()
			}

			// Only the stable version runs: it becomes the baseline.
			if err := m.ApplyConfig(scrapeConfigs(t, doc(false))); err != nil {
				t.Fatal(err)
			}
			v1.serve(1000, 10)
			round()
			if deps := engine.Deployments(); len(deps) != 0 {
				t.Fatalf("deployment before the canary: %+v", deps)
			}
			// The canary appears (a reload adds its target): a deployment opens.
			if err := m.ApplyConfig(scrapeConfigs(t, doc(true))); err != nil {
				t.Fatal(err)
			}
			regressedAt := 0
			for i := 1; i <= 30 && regressedAt == 0; i++ {
				v1.serve(1000, 10)
				v2.serve(1000, tt.canaryBad)
				round()
				if len(rec.all) > 0 && rec.all[len(rec.all)-1].State == detector.StateRegressed {
					regressedAt = i
				}
			}
			deps := engine.Deployments()
			if len(deps) != 1 || deps[0].Version != "v2" || deps[0].PreviousVersion != "v1" || deps[0].Source != "implicit" {
				t.Fatalf("deployments = %+v", deps)
			}
			if len(rec.all) == 0 {
				t.Fatal("no verdict")
			}
			last := rec.all[len(rec.all)-1]
			ev := last.Signals[0]
			if tt.wantRegressed {
				if regressedAt == 0 {
					t.Fatalf("10x worse canary not detected in 30 rounds: %+v", ev)
				}
				if ev.Candidate.Ratio <= ev.Baseline.Ratio || ev.Candidate.Bad == 0 {
					t.Errorf("evidence = %+v", ev)
				}
				t.Logf("regressed after %d rounds: baseline %.3f, candidate %.3f", regressedAt, ev.Baseline.Ratio, ev.Candidate.Ratio)
				return
			}
			if regressedAt != 0 {
				t.Fatalf("healthy canary regressed at round %d: %+v", regressedAt, ev)
			}
			// The twin saw the same traffic: both cohorts were counted.
			if ev.Candidate.Total < 29_000 || ev.Baseline.Total < 29_000 {
				t.Errorf("cohort totals %v / %v, want every round's 1000 requests counted", ev.Baseline.Total, ev.Candidate.Total)
			}
		})
	}
}

// A bad canary is still detected, and a healthy one still passes, with
// hostile targets beside them, added with the canary: a v1 target exposing
// 1,000 junk series (each a new path) and a v2 target whose error counters
// are NaN and stamped in the year 2200. Before the per-version budget the junk took every tracked
// series (one budget for all versions) and the canary was never judged.
func TestScrapeDetectsAfterHostileTarget(t *testing.T) {
	var junk strings.Builder
	junk.WriteString("# TYPE http_requests_total counter\n")
	for i := range 1000 {
		fmt.Fprintf(&junk, "http_requests_total{code=\"200\",path=\"/junk/%d\"} 1\n", i)
	}
	year2200 := time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	poison := fmt.Sprintf("# TYPE http_requests_total counter\nhttp_requests_total{code=\"500\"} NaN\nhttp_requests_total{code=\"502\"} 1e9 %d\n", year2200)
	for _, tt := range []struct {
		name          string
		canaryBad     float64
		wantRegressed bool
	}{
		{"canary at 10% errors regresses", 100, true},
		{"healthy twin at 1% does not", 10, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v1, v2 := newVersion(t), newVersion(t)
			junkSrv := httptest.NewServer(fixedBody(ctText, junk.String()))
			poisonSrv := httptest.NewServer(fixedBody(ctText, poison))
			t.Cleanup(junkSrv.Close)
			t.Cleanup(poisonSrv.Close)
			doc := func(withCanary bool) string {
				s := fmt.Sprintf(`
scrape_configs:
  - job_name: checkout
    scrape_interval: 1h
    static_configs:
      - targets: [%s]
        labels: {version: v1}
`, hostOf(v1.srv))
				if withCanary {
					// The junk comes once v1's own series are tracked: junk
					// of a version can fill that version's budget, no other.
					s += fmt.Sprintf("      - targets: [%s]\n        labels: {version: v1}\n", hostOf(junkSrv))
					s += fmt.Sprintf("      - targets: [%s, %s]\n        labels: {version: v2}\n", hostOf(v2.srv), hostOf(poisonSrv))
				}
				return s + `
guards:
  - name: checkout
    service: checkout
    service_label: job
    version_label: version
    signals:
      - name: errors
        metric: http_requests_total
        status_label: code
`
			}
			cfg, err := configs.Parse([]byte(doc(true)))
			if err != nil {
				t.Fatal(err)
			}
			now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
			rec := &verdicts{}
			engine := detector.NewEngine(cfg, detector.EngineOptions{Handler: rec, Now: func() time.Time { return now }})
			m := NewManager(Config{Appender: engine, Filter: engine, Logger: testLogger(t), Registerer: prometheus.NewRegistry(),
				MaxSeries: 500, MaxSeriesPerVersion: 50, VersionLabels: []string{"job", "version"}})
			t.Cleanup(m.Stop)
			round := func() {
				t.Helper()
				if err := m.ScrapeNow(context.Background()); err != nil {
					t.Fatal(err)
				}
				now = now.Add(10 * time.Second)
				engine.Evaluate()
			}
			if err := m.ApplyConfig(scrapeConfigs(t, doc(false))); err != nil {
				t.Fatal(err)
			}
			v1.serve(1000, 10)
			round()
			if err := m.ApplyConfig(scrapeConfigs(t, doc(true))); err != nil {
				t.Fatal(err)
			}
			regressedAt := 0
			for i := 1; i <= 30 && regressedAt == 0; i++ {
				v1.serve(1000, 10)
				v2.serve(1000, tt.canaryBad)
				round()
				if len(rec.all) > 0 && rec.all[len(rec.all)-1].State == detector.StateRegressed {
					regressedAt = i
				}
			}
			if len(rec.all) == 0 {
				t.Fatal("no verdict: the canary was never judged")
			}
			ev := rec.all[len(rec.all)-1].Signals[0]
			if tt.wantRegressed {
				if regressedAt == 0 {
					t.Fatalf("10x worse canary not detected in 30 rounds after the hostile targets: %+v", ev)
				}
				t.Logf("regressed after %d rounds: baseline %.3f, candidate %.3f", regressedAt, ev.Baseline.Ratio, ev.Candidate.Ratio)
				return
			}
			if regressedAt != 0 {
				t.Fatalf("healthy canary regressed at round %d: %+v", regressedAt, ev)
			}
			if ev.Candidate.Total < 29_000 || ev.Baseline.Total < 29_000 {
				t.Errorf("cohort totals %v / %v, want every round's 1000 requests counted", ev.Baseline.Total, ev.Candidate.Total)
			}
		})
	}
}
