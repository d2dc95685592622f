package sources

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkCumulativeParallel is the tracker's cost per counter point when
// several receivers' requests (or one receiver's concurrent requests) feed
// it at once, as the daemon's remote-write, OTLP and scrape inputs do: each
// goroutine is one sender with 1,000 series of its own, two cohorts, every
// pass a second later; with the limits the daemon sets (timestamp bound,
// per-version budget). Run with -cpu 1,2,4,8 and -mutexprofile to see
// whether the points of different series wait on each other.
func BenchmarkCumulativeParallel(b *testing.B) {
	const perSender = 1000
	c := NewCumulative(1_000_000, 15*time.Minute, MaxAhead(10*time.Minute), MaxSeriesPerCohort(100_000))
	base := time.Now().Add(-30 * 24 * time.Hour).UnixNano() // room for b.N seconds, none ahead
	var senders atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		id := senders.Add(1)
		keys := make([]SeriesKey, perSender)
		for i := range keys {
			keys[i] = StringKey(`http_requests_total{code="200",instance="10.0.` + strconv.FormatInt(id, 10) + `.` +
				strconv.Itoa(i) + `:8080",job="checkout",version="v1"}`).In(Cohort(id<<1 | int64(i%2)<<0 | 1))
		}
		now, v := base, 0.0
		for i := 0; pb.Next(); i++ {
			if i%perSender == 0 {
				now += int64(time.Second)
				v++
			}
			if _, _, _, err := c.Counter(keys[i%perSender], 1, now, v); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "points/s")
}

// BenchmarkConvertCountersParallel is BenchmarkConvertCounters (the
// converter remote write shares across its requests) with concurrent
// requests: each goroutine posts its own 200 series of 8 labels.
func BenchmarkConvertCountersParallel(b *testing.B) {
	c := NewPromConverter(nil, Limits{MaxSeries: 1_000_000, MaxSeriesPerVersion: 100_000, CohortLabels: []string{"job", "version"},
		MaxTimestampAhead: 10 * time.Minute, MaxBucketsPerHistogram: 2048})
	start := time.Now().Add(-30 * 24 * time.Hour).UnixMilli()
	var senders atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		id := strconv.FormatInt(senders.Add(1), 10)
		pts := make([]PromPoint, 200)
		for i := range pts {
			pts[i] = PromPoint{Labels: Labels{{Name: "__name__", Value: "http_requests_total"}, {Name: "code", Value: strconv.Itoa(200 + i%5*100)},
				{Name: "instance", Value: "10." + id + ".0." + strconv.Itoa(i) + ":9100"}, {Name: "job", Value: "checkout"}, {Name: "method", Value: "GET"},
				{Name: "path", Value: "/api/v" + strconv.Itoa(i%7)}, {Name: "version", Value: "v" + strconv.Itoa(i%2+1)}, {Name: "zone", Value: "eu-west-1"}},
				Type: "counter", Value: float64(i)}
		}
		drops := map[string]int{}
		ts := start
		for i := 0; pb.Next(); i++ {
			ts += 1000
			for j := range pts {
				pts[j].TimestampMs = ts
				pts[j].Value++
			}
			if out, _ := c.Convert(pts, drops); i > 0 && len(out) != len(pts) {
				b.Errorf("%d samples, drops %v", len(out), drops)
				return
			}
		}
	})
	b.ReportMetric(float64(200*b.N)/b.Elapsed().Seconds(), "points/s")
}
