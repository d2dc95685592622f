package otlp_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/rollguard/rollguard/sources"
	"github.com/rollguard/rollguard/sources/otlp"
)

// discardSink counts samples and keeps nothing, so the benchmark measures
// the receiver rather than the Appender.
type discardSink struct{ n int }

func (d *discardSink) Append(s []sources.Sample) error { d.n += len(s); return nil }

// BenchmarkReceiverProto measures one OTLP/HTTP protobuf export through
// Receiver.Handler (no network): body read, decode, conversion, the
// cumulative-to-increment step and the response.
//
// The request is what one checkout pod's SDK sends per export: the
// http.server.request.duration histogram (cumulative, 14 buckets, the SDK's
// default bounds) for 2 versions × 5 status codes × 10 routes = 100 data
// points. The same body is posted every iteration: after the first, every
// point hits the steady-state path (known series, same start, no reset), which
// costs the same whatever the counts are, so the body need not change.
//
//	go test ./sources/otlp -run '^$' -bench BenchmarkReceiverProto -benchmem
func BenchmarkReceiverProto(b *testing.B) {
	sdkBounds := []float64{0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000}
	counts := make([]uint64, len(sdkBounds)+1)
	for i := range counts {
		counts[i] = uint64(10 * (i + 1))
	}
	var total uint64
	for _, c := range counts {
		total += c
	}
	md := pmetric.NewMetrics()
	for _, version := range []string{"v1", "v2"} {
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("service.name", "checkout")
		rm.Resource().Attributes().PutStr("service.version", version)
		rm.Resource().Attributes().PutStr("host.name", "checkout-"+version+"-7d9f8")
		m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		m.SetName(reqDur)
		h := m.SetEmptyHistogram()
		h.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		for _, code := range []int64{200, 201, 404, 500, 503} {
			for r := 0; r < 10; r++ {
				dp := h.DataPoints().AppendEmpty()
				dp.Attributes().PutStr("http.request.method", "GET")
				dp.Attributes().PutStr("http.route", "/api/route/"+string(rune('a'+r)))
				dp.Attributes().PutInt("http.response.status_code", code)
				dp.SetStartTimestamp(pcommonTime(httpStart))
				dp.SetTimestamp(pcommonTime(httpT0))
				dp.SetCount(total)
				dp.SetSum(float64(total) * 12.5)
				dp.ExplicitBounds().FromRaw(sdkBounds)
				dp.BucketCounts().FromRaw(counts)
			}
		}
	}
	body := (&metricsBuilder{md: md}).proto(b)
	sink := &discardSink{}
	h := otlp.NewReceiver(otlp.Config{Appender: sink}).Handler()
	post := func() int {
		req := httptest.NewRequest(http.MethodPost, "/v1/metrics", bytes.NewReader(body))
		req.Header.Set("Content-Type", ctProto)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if code := post(); code != http.StatusOK || sink.n != 100 {
		b.Fatalf("first export: status %d, %d samples; want 200 and 100", code, sink.n)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if code := post(); code != http.StatusOK {
			b.Fatalf("status %d", code)
		}
	}
	b.StopTimer()
	if want := 100 * (b.N + 1); sink.n != want {
		b.Fatalf("%d samples appended, want %d", sink.n, want)
	}
}

func pcommonTime(t time.Time) pcommon.Timestamp { return pcommon.NewTimestampFromTime(t) }
