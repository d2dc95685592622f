package otlp_test

import (
	"context"
	"math"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/rollguard/rollguard/sources"
	"github.com/rollguard/rollguard/sources/otlp"
)

// TestGRPCThroughTheDoor: over OTLP/gRPC, from the OpenTelemetry SDK, the
// series of a service no guard reads are dropped at the door and the
// guarded service's arrive (the streaming decoder cuts the others out
// before pdata); a point rejected before the door is still answered
// through partial success, whatever its service.
func TestGRPCThroughTheDoor(t *testing.T) {
	gr := startGRPCReceiver(t, otlp.Config{Filter: checkoutDoors}, nil)
	for _, svc := range []string{"payments", "checkout"} {
		exp, err := otlpmetricgrpc.New(context.Background(), otlpmetricgrpc.WithEndpoint(gr.addr), otlpmetricgrpc.WithInsecure(),
			otlpmetricgrpc.WithRetry(otlpmetricgrpc.RetryConfig{Enabled: false}))
		if err != nil {
			t.Fatal(err)
		}
		res := resource.NewSchemaless(attribute.String("service.name", svc), attribute.String("service.version", "v1"))
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res),
			sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))))
		h, err := mp.Meter(svc).Float64Histogram(reqDur)
		if err != nil {
			t.Fatal(err)
		}
		c, err := mp.Meter(svc).Int64Counter("requests")
		if err != nil {
			t.Fatal(err)
		}
		h.Record(context.Background(), 0.1, metric.WithAttributes(attribute.Int("http.response.status_code", 200)))
		c.Add(context.Background(), 3, metric.WithAttributes(attribute.String("route", "/pay")))
		if err := mp.Shutdown(context.Background()); err != nil {
			t.Fatalf("%s: export: %v", svc, err)
		}
	}
	got := gr.sink.take()
	if len(got) != 2 {
		t.Fatalf("%d samples, want checkout's 2 (a histogram and a counter): %v", len(got), got)
	}
	for _, s := range got {
		if s.Labels.Get("service.name") != "checkout" {
			t.Errorf("sample of %s handed on: %v", s.Labels.Get("service.name"), s)
		}
	}

	// A gauge of NaN is rejected before the door is asked (payments'
	// too); checkout's point next to it is kept.
	m := newMetrics("v1").gauge("cpu", httpT0, 1)
	other := newMetrics("v1").gauge("cpu", httpT0, math.NaN())
	other.md.ResourceMetrics().At(0).Resource().Attributes().PutStr("service.name", "payments")
	other.md.ResourceMetrics().MoveAndAppendTo(m.md.ResourceMetrics())
	resp, err := gr.client(t).Export(context.Background(), pmetricotlp.NewExportRequestFromMetrics(m.md))
	if err != nil {
		t.Fatal(err)
	}
	if ps := resp.PartialSuccess(); ps.RejectedDataPoints() != 1 || ps.ErrorMessage() != "invalid_value" {
		t.Errorf("partial success: %d rejected (%q), want 1 (invalid_value)", ps.RejectedDataPoints(), ps.ErrorMessage())
	}
	checkSamples(t, gr.sink.take(), []sources.Sample{{Metric: "cpu", Labels: plainLabels("v1"),
		Kind: sources.KindGauge, TimeUnixNano: httpT0.UnixNano(), Value: 1}})
}
