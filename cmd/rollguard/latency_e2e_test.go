package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/rollguard/rollguard/detector"
)

const latencyGuard = `
  - name: checkout-latency
    service: checkout
    alpha: 0.001
    flags: [new-checkout-flow]
    signals:
      - name: latency
        type: latency
        quantiles: [0.5, 0.99]
`

// lognormal draws durations with median m seconds and log-sd sigma.
func lognormal(m, sigma float64) func(*rand.Rand) float64 {
	return func(r *rand.Rand) float64 { return m * math.Exp(sigma*r.NormFloat64()) }
}

// TestLatencyCanary: a canary whose latency is shifted up is caught on the
// baseline's quantile boundaries — with explicit and with exponential
// histograms from the OpenTelemetry SDK — and a canary with the same
// latency is not.
func TestLatencyCanary(t *testing.T) {
	expo := func(sdkmetric.InstrumentKind) sdkmetric.Aggregation {
		return sdkmetric.AggregationBase2ExponentialHistogram{MaxSize: 160, MaxScale: 20}
	}
	for _, agg := range []string{"explicit", "exponential"} {
		for _, tc := range []struct {
			name     string
			median   float64
			commands int
		}{{"slower", 0.08, 1}, {"same", 0.05, 0}} {
			t.Run(agg+"/"+tc.name, func(t *testing.T) {
				cfg := strings.Replace(testConfig, "guards:\n  - name: checkout\n", "guards:\n"+latencyGuard+"  - name: checkout\n", 1)
				td := startDaemon(t, cfg)
				svc := func(version string, median float64, seed uint64) *service {
					opts := []otlpmetrichttp.Option{otlpmetrichttp.WithEndpointURL(td.otlp)}
					if agg == "exponential" {
						opts = append(opts, otlpmetrichttp.WithAggregationSelector(expo))
					}
					exp, err := otlpmetrichttp.New(context.Background(), opts...)
					if err != nil {
						t.Fatal(err)
					}
					s := newServiceWith(t, exp, "checkout", version, 0.01, seed)
					s.latency = lognormal(median, 0.5)
					return s
				}
				stable, canary := svc("v1", 0.05, 7), svc("v2", tc.median, 8)
				stable.serve(t, 500)
				const rounds = 30
				for i := 0; i < rounds; i++ {
					stable.serve(t, 500)
					canary.serve(t, 500)
					// One batch a round: the first calibrates the boundaries,
					// the later ones are tested against them.
					td.nextEvaluation(t, "checkout-latency")
				}
				stable.serve(t, 500) // pairs the canary's last batch
				checkFor(t, 20*time.Second, func() error {
					v := td.verdict("checkout-latency")
					if v == nil || v.Signals[0].Candidate.Total == 0 {
						return fmt.Errorf("verdict %+v", v)
					}
					if v.State == detector.StateRegressed {
						return nil
					}
					// Every batch tested: the p50 arm has seen all canary requests but the first batch's.
					if v.Signals[0].Candidate.Total < (rounds-2)*500 {
						return fmt.Errorf("p50 arm saw %v canary requests: %+v", v.Signals[0].Candidate.Total, v.Signals)
					}
					return nil
				})
				checkFor(t, 10*time.Second, func() error {
					if n := len(td.commands()); n != tc.commands {
						return fmt.Errorf("%d commands, want %d", n, tc.commands)
					}
					return nil
				})
				v := td.verdict("checkout-latency")
				if (v.State == detector.StateRegressed) != (tc.commands == 1) {
					t.Fatalf("verdict %s: %+v", v.State, v.Signals)
				}
				p50 := v.Signals[0]
				if p50.Signal != "latency:p50" || p50.Quantile != 0.5 || p50.Boundary < 0.03 || p50.Boundary > 0.1 {
					t.Errorf("p50 arm = %+v", p50)
				}
				if tc.commands == 1 && p50.State != detector.StateRegressed {
					t.Errorf("a 60 %% slower median was not caught at p50: %+v", p50)
				}
			})
		}
	}
}
