package main

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// TestOTLPVariants runs the bad canary and its healthy twin through every
// way the OpenTelemetry SDK can send the request-duration histogram: HTTP
// and gRPC exporters (gRPC gzip-compressed), explicit and exponential
// histograms, cumulative and delta temporality.
func TestOTLPVariants(t *testing.T) {
	delta := func(sdkmetric.InstrumentKind) metricdata.Temporality { return metricdata.DeltaTemporality }
	expo := func(sdkmetric.InstrumentKind) sdkmetric.Aggregation {
		return sdkmetric.AggregationBase2ExponentialHistogram{MaxSize: 160, MaxScale: 20}
	}
	variants := []struct {
		name string
		exp  func(td *testDaemon) (sdkmetric.Exporter, error)
	}{
		{"http-explicit-delta", func(td *testDaemon) (sdkmetric.Exporter, error) {
			return otlpmetrichttp.New(context.Background(), otlpmetrichttp.WithEndpointURL(td.otlp),
				otlpmetrichttp.WithTemporalitySelector(delta))
		}},
		{"http-exponential-cumulative", func(td *testDaemon) (sdkmetric.Exporter, error) {
			return otlpmetrichttp.New(context.Background(), otlpmetrichttp.WithEndpointURL(td.otlp),
				otlpmetrichttp.WithAggregationSelector(expo), otlpmetrichttp.WithCompression(otlpmetrichttp.GzipCompression))
		}},
		{"grpc-explicit-cumulative", func(td *testDaemon) (sdkmetric.Exporter, error) {
			return otlpmetricgrpc.New(context.Background(), otlpmetricgrpc.WithEndpoint(td.grpcLn.Addr().String()),
				otlpmetricgrpc.WithInsecure(), otlpmetricgrpc.WithCompressor("gzip"))
		}},
		{"grpc-exponential-delta", func(td *testDaemon) (sdkmetric.Exporter, error) {
			return otlpmetricgrpc.New(context.Background(), otlpmetricgrpc.WithEndpoint(td.grpcLn.Addr().String()),
				otlpmetricgrpc.WithInsecure(), otlpmetricgrpc.WithTemporalitySelector(delta),
				otlpmetricgrpc.WithAggregationSelector(expo))
		}},
	}
	for _, v := range variants {
		for _, tc := range []struct {
			name     string
			canary   float64
			commands int
		}{{"regression", 0.06, 1}, {"healthy", 0.01, 0}} {
			t.Run(v.name+"/"+tc.name, func(t *testing.T) {
				// The rounds arrive within a few evaluations: without the
				// burst budget (TestBurstyPodFleet), which would hold such
				// a short regression of one source back.
				td := startDaemon(t, strings.Replace(testConfig, "    alpha: 0.001\n", "    alpha: 0.001\n    burst: 0s\n", 1))
				svc := func(version string, rate float64, seed uint64) *service {
					exp, err := v.exp(td)
					if err != nil {
						t.Fatal(err)
					}
					return newServiceWith(t, exp, "checkout", version, rate, seed)
				}
				stable, canary := svc("v1", 0.01, 5), svc("v2", tc.canary, 6)
				stable.serve(t, 500)
				const rounds = 30
				for i := 0; i < rounds; i++ {
					stable.serve(t, 500)
					canary.serve(t, 500)
				}
				stable.serve(t, 500) // pairs the canary's last batch
				td.expectOutcome(t, "checkout", rounds*500, tc.commands)
			})
		}
	}
}
