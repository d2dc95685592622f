package main

import (
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rollguard/rollguard/detector"
)

// scrapedService is a service instrumented with client_golang and served
// over HTTP, as rollguard's sidecar mode scrapes it.
type scrapedService struct {
	requests *prometheus.CounterVec
	errRate  float64
	rng      *rand.Rand
	srv      *httptest.Server
}

func newScrapedService(t *testing.T, version string, errRate float64, seed uint64) *scrapedService {
	reg := prometheus.NewRegistry()
	s := &scrapedService{errRate: errRate, rng: rand.New(rand.NewPCG(seed, 9)),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total", Help: "Requests.",
			ConstLabels: prometheus.Labels{"version": version}}, []string{"code"})}
	reg.MustRegister(s.requests)
	s.srv = httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *scrapedService) serve(n int) {
	for i := 0; i < n; i++ {
		code := "200"
		if s.rng.Float64() < s.errRate {
			code = "500"
		}
		s.requests.WithLabelValues(code).Inc()
	}
}

// TestScrapeCanary: rollguard scrapes a client_golang stable and canary;
// the bad canary is killed once, the healthy twin is not.
func TestScrapeCanary(t *testing.T) {
	for _, tc := range []struct {
		name     string
		canary   float64
		commands int
	}{{"regression", 0.10, 1}, {"healthy", 0.01, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			stable, canary := newScrapedService(t, "v1", 0.01, 1), newScrapedService(t, "v2", tc.canary, 2)
			cfg := strings.Replace(testConfig, "guards:\n", fmt.Sprintf(`scrape_configs:
  - job_name: checkout
    scrape_interval: 100ms
    static_configs:
      - targets: [%s, %s]
guards:
%s`, strings.TrimPrefix(stable.srv.URL, "http://"), strings.TrimPrefix(canary.srv.URL, "http://"), promGuard), 1)
			td := startDaemon(t, cfg)
			if code, b := td.post("/api/v1/deployments", `{"service":"checkout","version":"v2","previous_version":"v1"}`); code != 201 {
				t.Fatalf("announce: %d %s", code, b)
			}
			// Serve until the detector has seen 15,000 canary requests.
			checkFor(t, 60*time.Second, func() error {
				stable.serve(200)
				canary.serve(200)
				v := td.verdict("checkout-prom")
				if v == nil || v.Signals[0].Candidate.Total < 15000 {
					return fmt.Errorf("verdict %+v", v)
				}
				return nil
			})
			checkFor(t, 10*time.Second, func() error {
				if n := len(td.commands()); n != tc.commands {
					return fmt.Errorf("%d commands, want %d", n, tc.commands)
				}
				return nil
			})
			if got := td.verdict("checkout-prom").State; (got == detector.StateRegressed) != (tc.commands == 1) {
				t.Errorf("verdict %s", got)
			}
		})
	}
}
