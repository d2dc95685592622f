package otlp_test

import (
	"bytes"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"strconv"
	"syscall"
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
// points. The same body is posted every iteration with its points' time moved
// on ten seconds (the receiver drops a second point at a series' timestamp):
// after the first, every point hits the steady-state path (known series, same
// start, no reset), which costs the same whatever the counts are, so nothing
// else need change.
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
	// time_unix_nano is a fixed64: its offsets in the body are where
	// httpT0's little-endian bytes are (the start time differs).
	var stamp [8]byte
	binary.LittleEndian.PutUint64(stamp[:], uint64(httpT0.UnixNano()))
	var stamps []int
	for i := 0; i+8 <= len(body); i++ {
		if bytes.Equal(body[i:i+8], stamp[:]) {
			stamps = append(stamps, i)
		}
	}
	if len(stamps) != 100 {
		b.Fatalf("found %d timestamps in the body, want 100", len(stamps))
	}
	ts := httpT0
	sink := &discardSink{}
	h := otlp.NewReceiver(otlp.Config{Appender: sink}).Handler()
	post := func() int {
		for _, off := range stamps {
			binary.LittleEndian.PutUint64(body[off:], uint64(ts.UnixNano()))
		}
		ts = ts.Add(10 * time.Second)
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

// BenchmarkReceiverHostile measures what one hostile request of issue 13
// costs the receiver with the default limits: an OTLP/JSON attribute
// nested 187,000 levels deep (561,000 brackets, 12 KB gzip'd), a histogram
// point with 900,000 bounds (14 MB of protobuf) and 600,000 gauge points
// without attributes of an unguarded metric (over max_points_per_request;
// 12 MB, 40 KB gzip'd). B/op is the heap
// only; the deep JSON's cost before the depth limit was mostly goroutine
// stack, which the benchmark does not see (docs/benchmarks.md has the RSS).
//
//	go test ./sources/otlp -run '^$' -bench BenchmarkReceiverHostile -benchmem
func BenchmarkReceiverHostile(b *testing.B) {
	wide := make([]float64, 900_000)
	for i := range wide {
		wide[i] = float64(i)
	}
	for _, bc := range []struct {
		name, ct, enc string
		body          func() []byte
	}{
		{"deep_json", ctJSON, "gzip", func() []byte { return gzipped(b, deepJSON(187_000)) }},
		{"wide_histogram", ctProto, "", func() []byte {
			return newMetrics("v1").histogram(reqDur, pmetric.AggregationTemporalityDelta, 200, httpStart, httpT0, 1, 1, wide, make([]uint64, len(wide)+1)).proto(b)
		}},
		{"too_many_points", ctProto, "gzip", func() []byte {
			m := manyGauges(600_000)
			dps := m.scope.At(0).Gauge().DataPoints()
			for i := 0; i < dps.Len(); i++ {
				dps.At(i).Attributes().Clear()
			}
			return gzipped(b, m.proto(b))
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			body := bc.body()
			unguarded := sources.FilterFunc(func(m string) bool { return m != "cpu" })
			h := otlp.NewReceiver(otlp.Config{Appender: &discardSink{}, Filter: unguarded}).Handler()
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/v1/metrics", bytes.NewReader(body))
				req.Header.Set("Content-Type", bc.ct)
				if bc.enc != "" {
					req.Header.Set("Content-Encoding", bc.enc)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code >= 500 {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		})
	}
}

// BenchmarkReceiverDoor measures what make bench's OTLP load costs the
// receiver per export (tools/loadgen): 2,000 cumulative counter series of
// http_requests_total with 8 labels, job and version on the resource, the
// rest on the points; a guard reads job="checkout", one series in ten.
// The others are dropped at the door. "streaming" is the receiver as it
// runs (the walk cuts them out before pdata, wire.go); "pdata_whole"
// decodes every export whole into pdata first, as before. ns/point is the
// CPU time per received point (the benchmark runs on one goroutine).
//
//	go test ./sources/otlp -run '^$' -bench BenchmarkReceiverDoor -benchmem -count=3
func BenchmarkReceiverDoor(b *testing.B) {
	const series = 2000
	md := pmetric.NewMetrics()
	byRes := map[string]pmetric.NumberDataPointSlice{}
	guarded := 0
	for i := range series {
		job, version := "svc-"+strconv.Itoa(i%97), "v"+strconv.Itoa(i%3)
		if i%10 == 0 {
			job, version = "checkout", "v"+strconv.Itoa(1+i%2)
			guarded++
		}
		code := "200"
		if i%50 == 0 {
			code = "500"
		}
		dps, ok := byRes[job+"/"+version]
		if !ok {
			rm := md.ResourceMetrics().AppendEmpty()
			rm.Resource().Attributes().PutStr("job", job)
			rm.Resource().Attributes().PutStr("version", version)
			m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
			m.SetName("http_requests_total")
			sum := m.SetEmptySum()
			sum.SetIsMonotonic(true)
			sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
			dps = sum.DataPoints()
			byRes[job+"/"+version] = dps
		}
		dp := dps.AppendEmpty()
		dp.Attributes().PutStr("code", code)
		dp.Attributes().PutStr("instance", "10.0."+strconv.Itoa(i/250%256)+"."+strconv.Itoa(i%250)+":8080")
		dp.Attributes().PutStr("method", "GET")
		dp.Attributes().PutStr("region", "eu-west-1")
		dp.Attributes().PutStr("route", "/api/v1/r"+strconv.Itoa(i%40))
		dp.SetStartTimestamp(pcommonTime(httpStart))
		dp.SetTimestamp(pcommonTime(httpT0))
		dp.SetDoubleValue(float64(i))
	}
	filter := doorFilter{metrics: map[string]bool{"http_requests_total": true}, label: "job", service: "checkout"}
	for _, bc := range []struct {
		name string
		new  func(otlp.Config) *otlp.Receiver
	}{{"pdata_whole", otlp.NewWholeReceiver}, {"streaming", otlp.NewReceiver}} {
		b.Run(bc.name, func(b *testing.B) {
			body := (&metricsBuilder{md: md}).proto(b)
			var stamp [8]byte
			binary.LittleEndian.PutUint64(stamp[:], uint64(httpT0.UnixNano()))
			var stamps []int
			for i := 0; i+8 <= len(body); i++ {
				if bytes.Equal(body[i:i+8], stamp[:]) {
					stamps = append(stamps, i)
				}
			}
			if len(stamps) != series {
				b.Fatalf("found %d timestamps in the body, want %d", len(stamps), series)
			}
			ts := httpT0
			sink := &discardSink{}
			h := bc.new(otlp.Config{Appender: sink, Filter: filter}).Handler()
			post := func() int {
				for _, off := range stamps {
					binary.LittleEndian.PutUint64(body[off:], uint64(ts.UnixNano()))
				}
				ts = ts.Add(10 * time.Second)
				req := httptest.NewRequest(http.MethodPost, "/v1/metrics", bytes.NewReader(body))
				req.Header.Set("Content-Type", ctProto)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				return rec.Code
			}
			if code := post(); code != http.StatusOK || sink.n != guarded {
				b.Fatalf("first export: status %d, %d samples; want 200 and %d", code, sink.n, guarded)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU(b)
			for b.Loop() {
				if code := post(); code != http.StatusOK {
					b.Fatalf("status %d", code)
				}
			}
			cpu := processCPU(b) - cpu0
			b.StopTimer()
			if want := guarded * (b.N + 1); sink.n != want {
				b.Fatalf("%d samples appended, want %d", sink.n, want)
			}
			perPoint := float64(b.Elapsed().Nanoseconds()) / float64(b.N*series)
			b.ReportMetric(perPoint, "ns/point")
			b.ReportMetric(1e9/perPoint, "points/s")
			// The process's CPU time (the collector's included) is the
			// figure a busy machine does not skew as it does the clock.
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*series), "cpu-ns/point")
		})
	}
}

// processCPU is the CPU time the process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
