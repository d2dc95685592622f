package main

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	remote "github.com/prometheus/client_golang/exp/api/remote"
	writev2 "github.com/prometheus/client_golang/exp/api/remote/genproto/v2"
)

// promGuard guards checkout by Prometheus naming: job and version labels,
// http_requests_total with a code label.
const promGuard = `
  - name: checkout-prom
    service: checkout
    service_label: job
    version_label: version
    alpha: 0.001
    burst: 0s # the rounds arrive within a few evaluations (see TestOTLPVariants)
    flags: [new-checkout-flow]
    signals:
      - name: errors
        metric: http_requests_total
        status_label: code
`

// promService is a service whose Prometheus counters reach rollguard by
// remote write 2.0, sent with client_golang's remote API.
type promService struct {
	api     *remote.API
	version string
	ok, bad float64
	errRate float64
	rng     *rand.Rand
	tsMs    int64
}

func newPromService(t *testing.T, td *testDaemon, version string, errRate float64, seed uint64) *promService {
	api, err := remote.NewAPI(td.web, remote.WithAPIPath("/api/v1/write"))
	if err != nil {
		t.Fatal(err)
	}
	return &promService{api: api, version: version, errRate: errRate, rng: rand.New(rand.NewPCG(seed, 3)), tsMs: time.Now().UnixMilli()}
}

func (p *promService) serve(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if p.rng.Float64() < p.errRate {
			p.bad++
		} else {
			p.ok++
		}
	}
	p.tsMs += 1000
	st := writev2.NewSymbolTable()
	req := &writev2.Request{}
	for _, c := range []struct {
		code string
		v    float64
	}{{"200", p.ok}, {"500", p.bad}} {
		req.Timeseries = append(req.Timeseries, &writev2.TimeSeries{
			LabelsRefs: st.SymbolizeLabels([]string{"__name__", "http_requests_total", "code", c.code, "job", "checkout", "version", p.version}, nil),
			Samples:    []*writev2.Sample{{Value: c.v, Timestamp: p.tsMs}},
			Metadata:   &writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER},
		})
	}
	req.Symbols = st.Symbols()
	stats, err := p.api.Write(context.Background(), remote.WriteV2MessageType, req)
	if err != nil || stats.Samples != 2 {
		t.Fatalf("remote write: %+v, %v", stats, err)
	}
}

// TestRemoteWriteCanary: a bad canary reported by remote write 2.0 is
// detected and killed once; its healthy twin is not.
func TestRemoteWriteCanary(t *testing.T) {
	cfg := strings.Replace(testConfig, "guards:\n", "guards:\n"+promGuard, 1)
	for _, tc := range []struct {
		name     string
		canary   float64
		commands int
	}{{"regression", 0.08, 1}, {"healthy", 0.01, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			td := startDaemon(t, cfg)
			stable, canary := newPromService(t, td, "v1", 0.01, 1), newPromService(t, td, "v2", tc.canary, 2)
			stable.serve(t, 500) // sets the counters' bases; v1 becomes stable
			canary.serve(t, 500)
			const rounds = 30
			for i := 0; i < rounds; i++ {
				stable.serve(t, 500)
				canary.serve(t, 500)
			}
			stable.serve(t, 500) // pairs the canary's last batch
			td.expectOutcome(t, "checkout-prom", rounds*500, tc.commands)
		})
	}
}
