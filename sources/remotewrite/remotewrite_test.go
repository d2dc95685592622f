package remotewrite_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/snappy"
	writev2 "github.com/prometheus/client_golang/exp/api/remote/genproto/v2"
	"github.com/prometheus/prometheus/prompb"

	"github.com/rollguard/rollguard/sources"
	"github.com/rollguard/rollguard/sources/remotewrite"
)

var protocols = []struct {
	name  string
	build func(...series) any
}{
	{"1.0", func(ss ...series) any { return v1Request(ss...) }},
	{"2.0", func(ss ...series) any { return v2Request(ss...) }},
}

// Every case runs over both protocol versions: each request is built with
// the real protobuf types, posted, and what reaches the Appender, the 2.0
// written headers and the drop counts must be exactly as listed.
func TestConvert(t *testing.T) {
	checkout := func(kv ...string) []string { return append([]string{"job", "checkout"}, kv...) }
	requests := func(kv ...string) []string { return append(checkout("__name__", "http_requests_total"), kv...) }
	classic := func(t int64, b1, b2, inf, sum float64) []series {
		mk := func(name string, extra []string, v float64) series {
			return series{labels: append(checkout("__name__", name), extra...), typ: "histogram", family: "rt", samples: []pt{{t, v}}}
		}
		return []series{mk("rt_bucket", []string{"le", "0.1"}, b1), mk("rt_bucket", []string{"le", "0.5"}, b2),
			mk("rt_bucket", []string{"le", "+Inf"}, inf), mk("rt_count", nil, inf), mk("rt_sum", nil, sum)}
	}
	cases := []struct {
		name   string
		filter sources.Filter
		// requests are sent in order; each must answer 204.
		requests [][]series
		want     []string
		// written is the sum of the 2.0 headers over the requests:
		// samples, histograms, exemplars.
		written [3]int
		drops   map[string]float64
	}{{
		name: "counter: the first point of a series of unknown age sets the base",
		requests: [][]series{
			{{labels: requests("code", "500"), typ: "counter", samples: []pt{{1000, 10}, {2000, 12}}, exemplars: 1}},
			{{labels: requests("code", "500"), typ: "counter", samples: []pt{{3000, 20}}}},
			{{labels: requests("code", "500"), typ: "counter", samples: []pt{{4000, 3}}}}, // reset
		},
		want: []string{
			`counter http_requests_total{code="500",job="checkout"} @2000 = 2`,
			`counter http_requests_total{code="500",job="checkout"} @3000 = 8`,
			`counter http_requests_total{code="500",job="checkout"} @4000 = 3`,
		},
		written: [3]int{4, 0, 1},
	}, {
		name: "counter without metadata: a _total name is a counter, another name a gauge",
		requests: [][]series{{
			{labels: requests("code", "200"), samples: []pt{{1000, 5}, {2000, 7}}},
			{labels: checkout("__name__", "queue_depth"), samples: []pt{{1000, 5}, {2000, 7}}},
		}},
		want: []string{
			`counter http_requests_total{code="200",job="checkout"} @2000 = 2`,
			`gauge queue_depth{job="checkout"} @1000 = 5`,
			`gauge queue_depth{job="checkout"} @2000 = 7`,
		},
		written: [3]int{4, 0, 0},
	}, {
		name: "metadata type counter on a name without _total",
		requests: [][]series{
			{{labels: checkout("__name__", "requests"), typ: "counter", samples: []pt{{1000, 5}, {2000, 9}}}},
		},
		want:    []string{`counter requests{job="checkout"} @2000 = 4`},
		written: [3]int{2, 0, 0},
	}, {
		name: "gauge, with a stale marker accepted and skipped",
		requests: [][]series{
			{{labels: checkout("__name__", "pool_in_use"), typ: "gauge", samples: []pt{{1000, 3}, {2000, 4.5}, {3000, staleNaN}}}},
		},
		want:    []string{`gauge pool_in_use{job="checkout"} @1000 = 3`, `gauge pool_in_use{job="checkout"} @2000 = 4.5`},
		written: [3]int{3, 0, 0},
	}, {
		name:     "classic histogram converted series by series",
		requests: [][]series{classic(1000, 5, 8, 10, 2), classic(2000, 7, 12, 15, 3)},
		want: []string{
			`histogram rt{job="checkout"} @2000 count=0 sum=0 le=0.1:2`,
			`histogram rt{job="checkout"} @2000 count=0 sum=0 le=0.5:4`,
			`histogram rt{job="checkout"} @2000 count=0 sum=0 le=+Inf:5`,
			`histogram rt{job="checkout"} @2000 count=5 sum=0`,
			`histogram rt{job="checkout"} @2000 count=0 sum=1`,
		},
		written: [3]int{10, 0, 0},
	}, {
		// Prometheus index 0,1,3 (OpenTelemetry -1,0,2); deltas 1,1,-1 are
		// counts 1,2,1, then deltas 2,1,0 are counts 2,3,3.
		name: "native histogram with integer counts as deltas",
		requests: [][]series{{{labels: checkout("__name__", "rt"), typ: "histogram", hists: []*writev2.Histogram{
			intHistogram(1000, 0, 7, 1, 10, []*writev2.BucketSpan{span(0, 2), span(1, 1)}, []int64{1, 1, -1}, []*writev2.BucketSpan{span(0, 1)}, []int64{2}),
			intHistogram(2000, 0, 13, 2, 20, []*writev2.BucketSpan{span(0, 2), span(1, 1)}, []int64{2, 1, 0}, []*writev2.BucketSpan{span(0, 1)}, []int64{3}),
		}}}},
		want:    []string{`histogram rt{job="checkout"} @2000 count=6 sum=10 native=scale:0 zt:0.001 zc:1 pos:-1[1 1 0 2] neg:-1[1]`},
		written: [3]int{0, 2, 0},
	}, {
		name: "native histogram with float counts",
		requests: [][]series{{{labels: checkout("__name__", "rt"), hists: []*writev2.Histogram{
			floatHistogram(1000, 1, 4, 0, 3, []*writev2.BucketSpan{span(-1, 2)}, []float64{1.5, 2.5}),
			floatHistogram(2000, 1, 7, 0, 5, []*writev2.BucketSpan{span(-1, 2)}, []float64{2.5, 4.5}),
		}}}},
		want:    []string{`histogram rt{job="checkout"} @2000 count=3 sum=2 native=scale:1 zt:0 zc:0 pos:-2[1 2] neg:0[]`},
		written: [3]int{0, 2, 0},
	}, {
		name: "gauge histogram passes through as it is",
		requests: [][]series{{{labels: checkout("__name__", "inflight"), typ: "gaugehistogram", hists: []*writev2.Histogram{
			floatHistogram(1000, 0, 3, 1, 4, []*writev2.BucketSpan{span(1, 1)}, []float64{2}),
		}}}},
		want:    []string{`histogram inflight{job="checkout"} @1000 count=3 sum=4 native=scale:0 zt:0 zc:1 pos:0[2] neg:0[]`},
		written: [3]int{0, 1, 0},
	}, {
		name: "a histogram of custom buckets is the classic histogram it is",
		requests: [][]series{
			{{labels: checkout("__name__", "rt"), hists: []*writev2.Histogram{
				{Timestamp: 1000, Schema: -53, CustomValues: []float64{0.1, 1}, Count: &writev2.Histogram_CountInt{CountInt: 1}, Sum: 0.05,
					PositiveSpans: []*writev2.BucketSpan{span(0, 1)}, PositiveDeltas: []int64{1}},
			}}},
			{{labels: checkout("__name__", "rt"), hists: []*writev2.Histogram{
				{Timestamp: 2000, Schema: -53, CustomValues: []float64{0.1, 1}, Count: &writev2.Histogram_CountFloat{CountFloat: 4}, Sum: 2.05,
					PositiveSpans: []*writev2.BucketSpan{span(0, 1), span(1, 1)}, PositiveCounts: []float64{2, 2}},
			}}},
		},
		// Increments: le=0.1 1 → 2, le=1 1 → 2, +Inf 1 → 4 (cumulative).
		want: []string{
			`histogram rt{job="checkout"} @2000 count=0 sum=0 le=0.1:1`,
			`histogram rt{job="checkout"} @2000 count=0 sum=0 le=1:1`,
			`histogram rt{job="checkout"} @2000 count=0 sum=0 le=+Inf:3`,
			`histogram rt{job="checkout"} @2000 count=3 sum=0`,
			`histogram rt{job="checkout"} @2000 count=0 sum=1.9999999999999998`,
		},
		written: [3]int{0, 2, 0},
	}, {
		name: "malformed histograms are dropped and counted",
		requests: [][]series{{{labels: checkout("__name__", "rt"), hists: []*writev2.Histogram{
			{Timestamp: 1000, Schema: -53, CustomValues: []float64{1, 0.1}, Count: &writev2.Histogram_CountInt{CountInt: 1},
				PositiveSpans: []*writev2.BucketSpan{span(0, 1)}, PositiveDeltas: []int64{1}}, // bounds going down
			intHistogram(1000, 9, 0, 0, 0, nil, nil, nil, nil),
			intHistogram(1000, 0, 1, 0, 1, []*writev2.BucketSpan{span(0, 2)}, []int64{1, -2}, nil, nil),             // a count below zero
			intHistogram(1000, 0, 2, 0, 1, []*writev2.BucketSpan{span(0, 1), span(-3, 1)}, []int64{1, 0}, nil, nil), // a span going back
			intHistogram(1000, 0, 2, 0, 1, []*writev2.BucketSpan{span(0, 3)}, []int64{1, 0}, nil, nil),              // spans and counts disagree
		}}}},
		written: [3]int{0, 0, 0},
		drops:   map[string]float64{remotewrite.DropInvalidSchema: 1, sources.DropBadHistogram: 4},
	}, {
		name:   "series of no interest are accepted and not handed on",
		filter: sources.FilterFunc(func(m string) bool { return m == "http_requests_total" }),
		requests: [][]series{{
			{labels: checkout("__name__", "go_goroutines"), typ: "gauge", samples: []pt{{1000, 1}}, exemplars: 2},
			{labels: requests("code", "200"), typ: "counter", samples: []pt{{1000, 1}, {2000, 4}}},
			{labels: checkout("__name__", "rt"), hists: []*writev2.Histogram{floatHistogram(1000, 0, 1, 1, 0, nil, nil)}},
		}},
		want:    []string{`counter http_requests_total{code="200",job="checkout"} @2000 = 3`},
		written: [3]int{3, 1, 2},
	}, {
		name: "a series over a label limit is dropped, the rest of its request accepted",
		requests: [][]series{{
			{labels: manyLabels("wide", 65), typ: "gauge", samples: []pt{{1000, 1}, {2000, 1}}, exemplars: 1},
			{labels: manyLabels("wide_enough", 64), typ: "gauge", samples: []pt{{1000, 2}}},
			{labels: checkout("__name__", "long_name", strings.Repeat("n", 2049), "x"), typ: "gauge", samples: []pt{{1000, 3}}},
			{labels: checkout("__name__", "long_value", "path", strings.Repeat("v", 2049)), typ: "gauge", samples: []pt{{1000, 4}}},
			{labels: checkout("__name__", "at_limit", "path", strings.Repeat("v", 2048)), typ: "gauge", samples: []pt{{1000, 5}}},
		}},
		want: []string{
			`gauge wide_enough{l1="v",l10="v",l11="v",l12="v",l13="v",l14="v",l15="v",l16="v",l17="v",l18="v",l19="v",l2="v",l20="v",l21="v",l22="v",l23="v",l24="v",l25="v",l26="v",l27="v",l28="v",l29="v",l3="v",l30="v",l31="v",l32="v",l33="v",l34="v",l35="v",l36="v",l37="v",l38="v",l39="v",l4="v",l40="v",l41="v",l42="v",l43="v",l44="v",l45="v",l46="v",l47="v",l48="v",l49="v",l5="v",l50="v",l51="v",l52="v",l53="v",l54="v",l55="v",l56="v",l57="v",l58="v",l59="v",l6="v",l60="v",l61="v",l62="v",l63="v",l7="v",l8="v",l9="v"} @1000 = 2`,
			`gauge at_limit{job="checkout",path="` + strings.Repeat("v", 2048) + `"} @1000 = 5`,
		},
		written: [3]int{2, 0, 0},
		drops:   map[string]float64{remotewrite.DropLabelCount: 2, remotewrite.DropLabelName: 1, remotewrite.DropLabelValue: 1},
	}, {
		name: "labels are sorted, empty values are no label",
		requests: [][]series{{
			{labels: lbls("zone", "a", "__name__", "up", "empty", "", "job", "checkout"), typ: "gauge", samples: []pt{{1000, 1}}},
		}},
		want:    []string{`gauge up{job="checkout",zone="a"} @1000 = 1`},
		written: [3]int{1, 0, 0},
	}}
	for _, p := range protocols {
		for _, tc := range cases {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				f := newFixture(t, remotewrite.Config{Filter: tc.filter})
				var written [3]int
				for i, ss := range tc.requests {
					resp := f.send(p.build(ss...))
					if resp.code != 204 {
						t.Fatalf("request %d: %d %s", i, resp.code, resp.body)
					}
					if p.name == "2.0" {
						for j, h := range resp.written {
							n, err := strconv.Atoi(h)
							if err != nil {
								t.Fatalf("request %d: written header %d = %q", i, j, h)
							}
							written[j] += n
						}
					} else if resp.written != [3]string{} {
						t.Errorf("1.0 response carries the 2.0 headers: %q", resp.written)
					}
				}
				if got := f.rec.got(); !equal(got, tc.want) {
					t.Errorf("appended:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
				}
				if p.name == "2.0" && written != tc.written {
					t.Errorf("written samples, histograms, exemplars = %v, want %v", written, tc.written)
				}
				for reason, want := range tc.drops {
					if got := f.counter("rollguard_remotewrite_dropped_total", "reason", reason); got != want {
						t.Errorf("dropped{reason=%q} = %v, want %v", reason, got, want)
					}
				}
				if got, want := f.counter("rollguard_remotewrite_samples_accepted_total"), float64(len(tc.want)); got != want {
					t.Errorf("samples accepted = %v, want %v", got, want)
				}
			})
		}
	}
}

// Symbols are shared between series and referenced in any order; a created
// timestamp (the series field of the exp types, or the newer per-sample
// start timestamp) makes the first point of a fresh series count in full.
func TestV2SymbolsAndCreatedTimestamp(t *testing.T) {
	f := newFixture(t, remotewrite.Config{})
	syms := []string{"", "job", "http_requests_total", "__name__", "code", "500", "checkout", "200", "help"}
	req := &writev2.Request{Symbols: syms, Timeseries: []*writev2.TimeSeries{{
		// Unsorted references: the receiver sorts.
		LabelsRefs:       []uint32{4, 5, 1, 6, 3, 2},
		Metadata:         &writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, HelpRef: 8},
		CreatedTimestamp: 60_000,
		Samples:          []*writev2.Sample{{Value: 7, Timestamp: 90_000}, {Value: 9, Timestamp: 100_000}},
	}, {
		LabelsRefs: []uint32{3, 2, 4, 7, 1, 6},
		Metadata:   &writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER},
		Samples:    []*writev2.Sample{withStartTimestamp(&writev2.Sample{Value: 40, Timestamp: 90_000}, 80_000)},
	}, {
		// Created long before the point: an old series only sets its base.
		LabelsRefs:       []uint32{3, 2, 4, 7, 1, 2},
		Metadata:         &writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER},
		CreatedTimestamp: 1,
		Samples:          []*writev2.Sample{{Value: 40, Timestamp: 90_000_000}},
	}}}
	resp := f.send(req)
	if resp.code != 204 || resp.written != [3]string{"4", "0", "0"} {
		t.Fatalf("response %d %q, written %q", resp.code, resp.body, resp.written)
	}
	want := []string{
		`counter http_requests_total{code="500",job="checkout"} @90000 = 7`,
		`counter http_requests_total{code="500",job="checkout"} @100000 = 2`,
		`counter http_requests_total{code="200",job="checkout"} @90000 = 40`,
	}
	if got := f.rec.got(); !equal(got, want) {
		t.Errorf("appended:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Prometheus sends 1.0 metadata in requests of its own: the type it gives
// a family holds for the series of later requests.
func TestV1MetadataAcrossRequests(t *testing.T) {
	f := newFixture(t, remotewrite.Config{})
	meta := &prompb.WriteRequest{Metadata: []prompb.MetricMetadata{
		{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "requests"},
		{Type: prompb.MetricMetadata_SUMMARY, MetricFamilyName: "rpc_seconds"},
	}}
	if resp := f.send(meta); resp.code != 204 {
		t.Fatalf("metadata: %d %s", resp.code, resp.body)
	}
	for _, ts := range []int64{1000, 2000} {
		resp := f.send(v1Request(
			series{labels: lbls("__name__", "requests"), samples: []pt{{ts, float64(ts / 100)}}},
			series{labels: lbls("__name__", "rpc_seconds_count"), samples: []pt{{ts, float64(ts / 10)}}},
			series{labels: lbls("__name__", "rpc_seconds_sum"), samples: []pt{{ts, float64(ts / 1000)}}},
			series{labels: lbls("__name__", "rpc_seconds", "quantile", "0.5"), samples: []pt{{ts, 0.2}}},
		))
		if resp.code != 204 {
			t.Fatalf("series: %d %s", resp.code, resp.body)
		}
	}
	want := []string{
		`counter requests{} @2000 = 10`,
		`histogram rpc_seconds{} @2000 count=100 sum=0`,
		`histogram rpc_seconds{} @2000 count=0 sum=1`,
	}
	if got := f.rec.got(); !equal(got, want) {
		t.Errorf("appended:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := f.counter("rollguard_remotewrite_dropped_total", "reason", sources.DropSummaryQuantile); got != 0 {
		t.Errorf("summary quantiles are of no interest, not a loss: counted %v", got)
	}
}

func TestV1MetadataLimit(t *testing.T) {
	f := newFixture(t, remotewrite.Config{MaxMetricFamilies: 1})
	meta := &prompb.WriteRequest{Metadata: []prompb.MetricMetadata{
		{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "a"},
		{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "b"},
	}}
	if resp := f.send(meta); resp.code != 204 {
		t.Fatalf("metadata: %d %s", resp.code, resp.body)
	}
	if got := f.counter("rollguard_remotewrite_dropped_total", "reason", remotewrite.DropMetadataLimit); got != 1 {
		t.Errorf("metadata families refused = %v, want 1", got)
	}
}

// A malformed request is refused whole: nothing of it reaches the Appender
// or the counter state, and what was accepted before is intact.
func TestBadRequestLeavesStateIntact(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			f := newFixture(t, remotewrite.Config{})
			good := func(ts int64, v float64) series {
				return series{labels: lbls("__name__", "http_requests_total", "code", "500"), typ: "counter", samples: []pt{{ts, v}}}
			}
			if resp := f.send(p.build(good(1000, 10), good(2000, 15))); resp.code != 204 {
				t.Fatalf("good request: %d %s", resp.code, resp.body)
			}
			// A valid series with a huge value, then a malformed one.
			var bad []byte
			if p.name == "2.0" {
				req := v2Request(good(3000, 1e9))
				req.Timeseries = append(req.Timeseries, &writev2.TimeSeries{LabelsRefs: []uint32{1, 99}})
				bad = marshal(t, req)
			} else {
				// A second series whose label claims 9 bytes it does not have.
				bad = append(marshal(t, v1Request(good(3000, 1e9))), 0x0a, 0x02, 0x0a, 0x09)
			}
			ct := ctV1
			if p.name == "2.0" {
				ct = ctV2
			}
			if resp := f.post(ct, "snappy", snappy.Encode(nil, bad)); resp.code != 400 {
				t.Fatalf("bad request: %d %s", resp.code, resp.body)
			}
			if resp := f.send(p.build(good(4000, 18))); resp.code != 204 {
				t.Fatalf("good request: %d %s", resp.code, resp.body)
			}
			want := []string{
				`counter http_requests_total{code="500"} @2000 = 5`,
				`counter http_requests_total{code="500"} @4000 = 3`,
			}
			if got := f.rec.got(); !equal(got, want) {
				t.Errorf("appended:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}
