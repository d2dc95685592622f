package sources

import (
	"math"
	"testing"

	"github.com/prometheus/common/model"
)

func lbls(kv ...string) Labels {
	var ls Labels
	for i := 0; i+1 < len(kv); i += 2 {
		ls = append(ls, Label{Name: kv[i], Value: kv[i+1]})
	}
	return ls.Sort()
}

// A classic histogram without metadata is reassembled from its series, and
// its second scrape becomes per-bucket increments.
func TestPromConverterClassicHistogram(t *testing.T) {
	c := NewPromConverter(nil, Limits{MaxSeries: 100})
	scrape := func(ts int64, b1, b2, inf, sum float64) []PromPoint {
		mk := func(name, le string, v float64) PromPoint {
			kv := []string{"__name__", name, "job", "checkout", "code", "200"}
			if le != "" {
				kv = append(kv, "le", le)
			}
			return PromPoint{Labels: lbls(kv...), TimestampMs: ts, Value: v}
		}
		return []PromPoint{mk("rt_bucket", "0.1", b1), mk("rt_bucket", "0.5", b2), mk("rt_bucket", "+Inf", inf),
			mk("rt_count", "", inf), mk("rt_sum", "", sum)}
	}
	drops := map[string]int{}
	if out, _ := c.Convert(scrape(1000, 5, 8, 10, 2), drops); len(out) != 0 {
		t.Fatalf("first point of a series of unknown age must only set the base: %+v", out)
	}
	out, _ := c.Convert(scrape(2000, 7, 12, 15, 3), drops)
	if len(out) != 1 {
		t.Fatalf("want one histogram sample, got %+v", out)
	}
	s := out[0]
	want := []Bucket{{UpperBound: 0.1, Count: 2}, {UpperBound: 0.5, Count: 2}, {UpperBound: math.Inf(1), Count: 1}}
	if s.Metric != "rt" || s.Kind != KindHistogram || s.Count != 5 || s.Sum != 1 || len(s.Buckets) != 3 {
		t.Fatalf("sample = %+v", s)
	}
	for i, b := range want {
		if s.Buckets[i] != b {
			t.Errorf("bucket %d = %+v, want %+v", i, s.Buckets[i], b)
		}
	}
	if s.Labels.String() != `{code="200",job="checkout"}` {
		t.Errorf("labels = %s", s.Labels)
	}
}

func TestPromConverterCounterGaugeAndFilter(t *testing.T) {
	c := NewPromConverter(FilterFunc(func(m string) bool { return m != "ignored_total" }), Limits{MaxSeries: 100})
	drops := map[string]int{}
	pts := func(ts int64, v float64) []PromPoint {
		return []PromPoint{
			{Labels: lbls("__name__", "http_requests_total", "code", "500"), TimestampMs: ts, Value: v},
			{Labels: lbls("__name__", "ignored_total"), TimestampMs: ts, Value: v},
			{Labels: lbls("__name__", "pool_in_use"), Type: model.MetricTypeGauge, TimestampMs: ts, Value: v},
			{Labels: lbls("__name__", "pool_in_use", "stale", "1"), TimestampMs: ts, Value: math.NaN()},
			{Labels: lbls("job", "x"), TimestampMs: ts, Value: 1},
		}
	}
	_, _ = c.Convert(pts(1000, 10), drops)
	out, _ := c.Convert(pts(2000, 4), drops) // counter reset: 4 is all new
	if len(out) != 2 || out[0].Kind != KindCounter || out[0].Value != 4 || out[1].Kind != KindGauge || out[1].Value != 4 {
		t.Fatalf("out = %+v", out)
	}
	if drops[DropNoName] != 2 {
		t.Errorf("drops = %v", drops)
	}
	if c.cum.Len() != 1 {
		t.Errorf("series tracked = %d, want 1 (gauges and filtered series keep no state)", c.cum.Len())
	}
}

// A native histogram whose schema drops between two points is merged by
// downscaling the previous point.
func TestPromConverterNativeSchemaChange(t *testing.T) {
	c := NewPromConverter(nil, Limits{MaxSeries: 100})
	drops := map[string]int{}
	h1 := NativeHistogram{Scale: 1, Positive: ExpBuckets{Offset: 0, Counts: []float64{1, 2, 3, 4}}}
	h2 := NativeHistogram{Scale: 0, Positive: ExpBuckets{Offset: 0, Counts: []float64{5, 9}}}
	mk := func(ts int64, h NativeHistogram) []PromPoint {
		return []PromPoint{{Labels: lbls("__name__", "rt"), TimestampMs: ts, CreatedMs: 9_000,
			Histogram: &PromHistogram{Count: h.Total(), Sum: 1, Native: h}}}
	}
	if out, _ := c.Convert(mk(10_000, h1), drops); len(out) != 1 || out[0].Count != 10 {
		t.Fatalf("fresh series counts in full: %+v", out)
	}
	out, _ := c.Convert(mk(11_000, h2), map[string]int{})
	if len(out) != 1 {
		t.Fatal("no sample")
	}
	n := out[0].Native
	// h1 at scale 0: [1+2, 3+4] = [3, 7]; h2 − h1 = [2, 2].
	if out[0].Count != 4 || n.Scale != 0 || n.Positive.Offset != 0 || len(n.Positive.Counts) != 2 || n.Positive.Counts[0] != 2 || n.Positive.Counts[1] != 2 {
		t.Errorf("increment = %+v %+v", out[0], n)
	}
}

func TestBucketsFromSpans(t *testing.T) {
	// Prometheus: span at 0 of 2, gap of 1, span of 1 → indices 0,1,3 → OTel -1,0,2.
	b, ok := BucketsFromSpans([]Span{{0, 2}, {1, 1}}, []float64{1, 2, 3})
	if !ok || b.Offset != -1 || len(b.Counts) != 4 || b.Counts[0] != 1 || b.Counts[1] != 2 || b.Counts[2] != 0 || b.Counts[3] != 3 {
		t.Errorf("buckets = %+v %v", b, ok)
	}
	if _, ok := BucketsFromSpans([]Span{{0, 2}}, []float64{1}); ok {
		t.Error("spans and counts that disagree were accepted")
	}
	if _, ok := BucketsFromSpans([]Span{{-2_000_000_000, 1}, {2_000_000_000, 1}}, []float64{1, 1}); ok {
		t.Error("a span layout of billions of buckets was accepted")
	}
}
