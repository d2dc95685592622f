package scrape

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// benchBody exposes series series from a client_golang registry in the
// format of contentType: four counters for every classic histogram with five
// buckets (eight series with +Inf, _count and _sum), so that two thirds of the
// series are histogram parts.
func benchBody(tb testing.TB, contentType string, series int) []byte {
	tb.Helper()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total", Help: "Requests."}, []string{"code", "path"})
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "http_request_duration_seconds", Help: "Latency.",
		Buckets: []float64{0.01, 0.05, 0.1, 0.5, 1}}, []string{"path"})
	reg.MustRegister(c, h)
	for i, n := 0, 0; n < series; i++ {
		path := fmt.Sprintf("/api/v1/items/%d", i)
		for _, code := range []string{"200", "404", "500", "503"} {
			if n < series {
				c.WithLabelValues(code, path).Add(float64(i + 1))
				n++
			}
		}
		if n+8 <= series {
			h.WithLabelValues(path).Observe(float64(i%100) / 100)
			n += 8
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	switch contentType {
	case ctOM:
		format = expfmt.NewFormat(expfmt.TypeOpenMetrics)
	case ctProto:
		format = expfmt.NewFormat(expfmt.TypeProtoDelim)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			tb.Fatal(err)
		}
	}
	if cl, ok := enc.(expfmt.Closer); ok {
		if err := cl.Close(); err != nil {
			tb.Fatal(err)
		}
	}
	return buf.Bytes()
}

// BenchmarkScrapeParse parses a body of 5,000 series in each format, target
// labels attached: the per-scrape CPU and allocation cost of a large target.
func BenchmarkScrapeParse(b *testing.B) {
	for _, f := range []struct{ name, ct string }{{"text", ctText}, {"openmetrics", ctOM}, {"protobuf", ctProto}} {
		b.Run(f.name, func(b *testing.B) {
			body := benchBody(b, f.ct, 5000)
			target := parseTarget{labels: lbls("instance", "10.0.0.1:8080", "job", "checkout", "version", "v2"), defaultMs: scrapeMs}
			if pts, err := parse(body, f.ct, target, map[string]int{}); err != nil || len(pts) != 5000 {
				b.Fatalf("%d points, error %v", len(pts), err)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parse(body, f.ct, target, map[string]int{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
