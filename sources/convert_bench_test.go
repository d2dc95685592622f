package sources

import (
	"strconv"
	"testing"
	"time"
)

// BenchmarkConvertCounters is the converter's cost per tracked counter
// point (remote write's hot path once a series is through the door): 200
// series of 8 labels, one point each, every iteration a second later; with
// the limits the daemon sets (timestamp bound, per-version budget by job
// and version) and without.
func BenchmarkConvertCounters(b *testing.B) {
	pts := make([]PromPoint, 200)
	for i := range pts {
		pts[i] = PromPoint{Labels: Labels{{Name: "__name__", Value: "http_requests_total"}, {Name: "code", Value: strconv.Itoa(200 + i%5*100)},
			{Name: "instance", Value: "10.0.0." + strconv.Itoa(i) + ":9100"}, {Name: "job", Value: "checkout"}, {Name: "method", Value: "GET"},
			{Name: "path", Value: "/api/v" + strconv.Itoa(i%7)}, {Name: "version", Value: "v" + strconv.Itoa(i%2+1)}, {Name: "zone", Value: "eu-west-1"}},
			Type: "counter", Value: float64(i)}
	}
	for _, tc := range []struct {
		name   string
		limits Limits
	}{
		{"no limits", Limits{MaxSeries: 10_000}},
		{"daemon limits", Limits{MaxSeries: 10_000, MaxSeriesPerVersion: 1000, CohortLabels: []string{"job", "version"},
			MaxTimestampAhead: 10 * time.Minute, MaxBucketsPerHistogram: 2048}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := NewPromConverter(nil, tc.limits)
			drops := map[string]int{}
			ts := time.Now().Add(-30 * 24 * time.Hour).UnixMilli() // room for b.N seconds, none ahead
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				ts += 1000
				for j := range pts {
					pts[j].TimestampMs = ts
					pts[j].Value += 1
				}
				out, _ := c.Convert(pts, drops)
				if i > 0 && len(out) != len(pts) {
					b.Fatalf("%d samples, drops %v", len(out), drops)
				}
			}
			b.ReportMetric(float64(b.N*len(pts))/b.Elapsed().Seconds(), "points/s")
		})
	}
}
