package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
)

// TestIngestLimits: the daemon applies the limits of its configuration to
// OTLP (JSON depth, points per request, buckets per histogram, credentials
// before a gRPC message is read, decode slots shared with remote write),
// answers each hostile request as docs/api.md says, and afterwards still
// takes the SDK's exports and acts on a bad canary.
func TestIngestLimits(t *testing.T) {
	cfg := strings.Replace(testConfig, "otlp:\n", "otlp:\n  authorization:\n    credentials: s3cret\n", 1) +
		"limits:\n  max_json_depth: 16\n  max_points_per_request: 1000\n  max_buckets_per_histogram: 64\n  max_concurrent_decodes: 2\n"
	td := startDaemon(t, cfg)
	token := map[string]string{"Authorization": "Bearer s3cret"}

	post := func(ct string, body []byte) (int, string) {
		t.Helper()
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		_, _ = zw.Write(body)
		_ = zw.Close()
		req, _ := http.NewRequest(http.MethodPost, td.otlp, &z)
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Content-Encoding", "gzip")
		req.Header.Set("Authorization", token["Authorization"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	metrics := func(points, bounds int) []byte {
		md := pmetric.NewMetrics()
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("service.name", "checkout")
		rm.Resource().Attributes().PutStr("service.version", "v2")
		m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		m.SetName("http.server.request.duration")
		h := m.SetEmptyHistogram()
		h.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
		for i := 0; i < points; i++ {
			dp := h.DataPoints().AppendEmpty()
			dp.SetTimestamp(pcommon.NewTimestampFromTime(time.Now()))
			dp.Attributes().PutInt("http.response.status_code", int64(200+i))
			for b := 0; b < bounds; b++ {
				dp.ExplicitBounds().Append(float64(b))
			}
			dp.BucketCounts().FromRaw(make([]uint64, bounds+1))
		}
		body, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
		if err != nil {
			t.Fatal(err)
		}
		return body
	}

	for _, tc := range []struct {
		name, ct string
		body     []byte
		code     int
		msg      string
	}{
		{"JSON nested past max_json_depth", "application/json", []byte(strings.Repeat("[", 560_000) + strings.Repeat("]", 560_000)),
			400, "JSON nested deeper than 16 levels"},
		{"more points than max_points_per_request", "application/x-protobuf", metrics(1001, 1),
			413, "request carries 1001 data points, more than the 1000 allowed (limits.max_points_per_request)"},
		{"a histogram over max_buckets_per_histogram", "application/x-protobuf", metrics(1, 64),
			200, "too_many_buckets"},
	} {
		if code, body := post(tc.ct, tc.body); code != tc.code || !strings.Contains(body, tc.msg) {
			t.Errorf("%s: status %d, body %q; want %d with %q", tc.name, code, body, tc.code, tc.msg)
		}
	}

	grpcExp := func(headers map[string]string) *service {
		exp, err := otlpmetricgrpc.New(context.Background(), otlpmetricgrpc.WithEndpoint(td.grpcLn.Addr().String()), otlpmetricgrpc.WithInsecure(),
			otlpmetricgrpc.WithHeaders(headers), otlpmetricgrpc.WithRetry(otlpmetricgrpc.RetryConfig{Enabled: false}))
		if err != nil {
			t.Fatal(err)
		}
		return newServiceWith(t, exp, "checkout", "v2", 0, 3)
	}
	intruder := grpcExp(nil)
	intruder.hist.Record(context.Background(), 0.1, intruder.ok)
	if err := intruder.mp.ForceFlush(context.Background()); err == nil || !strings.Contains(err.Error(), "Unauthenticated") {
		t.Errorf("gRPC export without the token: %v, want Unauthenticated", err)
	}

	resp, err := http.Get(td.web + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	exposition, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`rollguard_otlp_requests_total{code="401"} 1`, `rollguard_otlp_requests_total{code="413"} 1`,
		`rollguard_otlp_points_dropped_total{reason="too_many_buckets"} 1`, "rollguard_decodes_in_flight 0"} {
		if !strings.Contains(string(exposition), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// Afterwards: the SDK's exports, over HTTP and gRPC, are taken, and a
	// bad canary is caught.
	newHTTP := func(version string, errRate float64, seed uint64) *service {
		exp, err := otlpmetrichttp.New(context.Background(), otlpmetrichttp.WithEndpointURL(td.otlp), otlpmetrichttp.WithHeaders(token))
		if err != nil {
			t.Fatal(err)
		}
		return newServiceWith(t, exp, "checkout", version, errRate, seed)
	}
	stable := newHTTP("v1", 0.01, 1)
	canary := grpcExp(token)
	canary.errRate = 0.05
	stable.serve(t, 500)
	rounds := 0
	checkFor(t, 60*time.Second, func() error {
		stable.serve(t, 500)
		canary.serve(t, 500)
		rounds++
		if n := len(td.commands()); n == 0 {
			return fmt.Errorf("no command yet after %d rounds", rounds)
		}
		return nil
	})
	t.Logf("flag_kill after %d rounds", rounds)
}
