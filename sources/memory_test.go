package sources

import (
	"runtime"
	"strconv"
	"testing"
)

// BenchmarkSeriesMemory reports the steady-state memory one tracked
// cumulative series costs, over 100,000 counter series of 8 labels and over
// 100,000 classic histogram series of 12 buckets (issue goal: <= 256 B for a
// matching series). Series of unguarded metrics are filtered before this
// state and cost nothing.
func BenchmarkSeriesMemory(b *testing.B) {
	const n = 100_000
	bounds := []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	counts := make([]float64, len(bounds)+1)
	for _, kind := range []string{"counter", "histogram"} {
		b.Run(kind, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				c := NewCumulative(2*n, 1<<62)
				for s := 0; s < n; s++ {
					key := `http_requests_total{code="200",env="prod",instance="10.0.` + strconv.Itoa(s/250) + `.` + strconv.Itoa(s%250) +
						`:8080",job="checkout",method="GET",region="eu-west-1",route="/api/v1/cart",version="v1"}`
					if kind == "counter" {
						_, _, _, _ = c.Counter(StringKey(key), 1, 2, float64(s))
					} else {
						_, _, _, _, _, _ = c.Histogram(StringKey(key), 1, 2, 10, 1, bounds, counts)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/series")
				runtime.KeepAlive(c)
			}
		})
	}
}
