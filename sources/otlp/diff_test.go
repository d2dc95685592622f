package otlp_test

import (
	"bytes"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/rollguard/rollguard/sources"
	"github.com/rollguard/rollguard/sources/otlp"
)

// doorFilter reads like the detector's door table (detector/doors.go):
// metrics by name, and series by a service label.
type doorFilter struct {
	metrics map[string]bool
	label   string
	service string
}

func (d doorFilter) Wants(metric string) bool { return d.metrics[metric] }

func (d doorFilter) Doors(metric string) []sources.Label {
	if !d.metrics[metric] {
		return []sources.Label{}
	}
	return []sources.Label{{Name: d.label, Value: d.service}}
}

func (d doorFilter) WantsSeries(metric string, ls sources.Labels) bool {
	return d.metrics[metric] && ls.Get(d.label) == d.service
}

// checkoutDoors wants the metrics of the fuzz seeds, of service checkout.
var checkoutDoors = doorFilter{
	metrics: map[string]bool{reqDur: true, "requests": true, "in_flight": true, "cpu": true,
		"rpc.duration": true, "rpc.latency": true, "nothing": true},
	label: "service.name", service: "checkout",
}

// diffSeeds are protobuf exports for FuzzStreamingMatchesPdata: every
// metric type, delta and cumulative, values convert rejects, series of
// another service, attributes the walk leaves to convert (an int, a
// duplicate, one over the limits, a point's overriding the resource's).
func diffSeeds(t testing.TB) [][]byte {
	cum, delta := pmetric.AggregationTemporalityCumulative, pmetric.AggregationTemporalityDelta
	all := func(b *metricsBuilder) *metricsBuilder {
		return b.histogram(reqDur, cum, 200, httpStart, httpT0, 10, 2, bounds, []uint64{5, 3, 2}).
			histogram(reqDur, delta, 500, httpStart, httpT0, 1, 0.5, bounds, []uint64{0, 1, 0}).
			sum("requests", cum, true, httpStart, httpT0, 7).
			sum("requests", delta, true, httpStart, httpT0, -3).
			sum("in_flight", cum, false, httpStart, httpT0, 3).
			doubleSum("requests", math.NaN()).
			doubleSum("requests", -1).
			gauge("cpu", httpT0, 0.5).
			gauge("cpu", httpT0, math.NaN()).
			gauge("cpu", httpT0, math.Inf(-1)).
			gauge("unread", httpT0, 1).
			summary("rpc.duration", httpStart, httpT0, 4, 1).
			summary("rpc.duration", httpStart, httpT0, 4, math.Inf(1)).
			expHistogram("rpc.latency", httpStart, httpT0, -3, 3, 2, 2).
			empty("nothing").
			empty("unread.empty")
	}
	other := func(v string) *metricsBuilder {
		b := all(newMetrics(v))
		b.md.ResourceMetrics().At(0).Resource().Attributes().PutStr("service.name", "payments")
		return b
	}
	var out [][]byte
	out = append(out, all(newMetrics("v1")).proto(t), other("v1").proto(t))

	// Both services in one export, and a point that names its service
	// itself.
	mixed := all(newMetrics("v1"))
	other("v2").md.ResourceMetrics().MoveAndAppendTo(mixed.md.ResourceMetrics())
	mixed.gauge("cpu", httpT0, 2)
	mixed.scope.At(mixed.scope.Len()-1).Gauge().DataPoints().At(0).Attributes().PutStr("service.name", "payments")
	out = append(out, mixed.proto(t))
	over := other("v1").gauge("cpu", httpT0, 3)
	over.scope.At(over.scope.Len()-1).Gauge().DataPoints().At(0).Attributes().PutStr("service.name", "checkout")
	out = append(out, over.proto(t))

	// Attributes near and over the label limits (diffLimits), of
	// either service.
	for _, svc := range []string{"checkout", "payments"} {
		b := newMetrics("v1")
		b.md.ResourceMetrics().At(0).Resource().Attributes().PutStr("service.name", svc)
		for i, n := range []int{diffMaxLabels - 2, diffMaxLabels - 1, diffMaxLabels + 3} {
			b.gauge("cpu", httpT0, float64(i))
			attrs := b.scope.At(b.scope.Len() - 1).Gauge().DataPoints().At(0).Attributes()
			for j := range n {
				attrs.PutStr("a"+strconv.Itoa(j), "x")
			}
		}
		b.sum("requests", delta, true, httpStart, httpT0, 1)
		b.scope.At(b.scope.Len()-1).Sum().DataPoints().At(0).Attributes().PutStr("long", strings.Repeat("v", diffMaxValue+1))
		b.sum("requests", delta, true, httpStart, httpT0, 2)
		b.scope.At(b.scope.Len()-1).Sum().DataPoints().At(0).Attributes().PutStr(strings.Repeat("k", diffMaxValue+1), "v")
		b.sum("requests", delta, true, httpStart, httpT0, 3)
		b.scope.At(b.scope.Len()-1).Sum().DataPoints().At(0).Attributes().PutInt("service.name", 7)
		b.sum("requests", delta, true, httpStart, httpT0, 4)
		b.scope.At(b.scope.Len() - 1).Sum().DataPoints().At(0).Attributes().PutEmptySlice("service.name").AppendEmpty().SetStr("checkout")
		out = append(out, b.proto(t))
	}
	// A resource attribute over the limits: every point is rejected,
	// whatever its service.
	long := other("v1")
	long.md.ResourceMetrics().At(0).Resource().Attributes().PutStr("host.name", strings.Repeat("h", diffMaxValue+1))
	out = append(out, long.proto(t))
	// A duplicate service attribute on the wire: pdata keeps both, and
	// the last one wins.
	for _, order := range [][3]string{{"checkout", "payments", "checkout"}, {"checkout", "checkout", "payments"},
		{"payments", "payments", "checkout"}, {"payments", "checkout", "payments"}} {
		dup := newMetrics("v1").gauge("cpu", httpT0, 1)
		dup.md.ResourceMetrics().At(0).Resource().Attributes().PutStr("service.name", order[0])
		attrs := dup.scope.At(0).Gauge().DataPoints().At(0).Attributes()
		attrs.PutStr("service.namf", order[1])
		attrs.PutStr("service.namg", order[2])
		body := bytes.ReplaceAll(dup.proto(t), []byte("service.namf"), []byte("service.name"))
		out = append(out, bytes.ReplaceAll(body, []byte("service.namg"), []byte("service.name")))
	}
	return out
}

// The label limits of FuzzStreamingMatchesPdata, low enough for seeds to
// cross them.
const (
	diffMaxLabels = 6
	diffMaxValue  = 24
)

// checkoutDiffConfig is FuzzStreamingMatchesPdata's receiver: checkout's
// doors, limits low enough for its seeds to cross them.
func checkoutDiffConfig() otlp.Config {
	return otlp.Config{Filter: checkoutDoors, MaxRequestBytes: 1 << 16, MaxPoints: fuzzMaxPoints,
		MaxLabels: diffMaxLabels, MaxLabelValueLength: diffMaxValue, MaxBuckets: 16}
}

// FuzzStreamingMatchesPdata posts the same protobuf body to a receiver
// with the streaming decoder (wire.go) and to one that decodes with pdata
// whole, twice each (the second post meets the cumulative state the first
// left): both must answer the same status and response, and hand the
// Appender the same samples. With doors, the Filter drops the series of
// another service, so the walk cuts points out; without, it only drops
// metrics by name.
func FuzzStreamingMatchesPdata(f *testing.F) {
	for _, seed := range diffSeeds(f) {
		f.Add(seed, true)
		f.Add(seed, false)
	}
	// FuzzReceiver's corpus, its protobuf bodies.
	files, _ := filepath.Glob("testdata/fuzz/FuzzReceiver/*")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		if len(lines) < 4 || lines[2] != "bool(false)" || lines[3] != "bool(false)" {
			continue
		}
		body, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			f.Fatalf("%s: %v", name, err)
		}
		f.Add([]byte(body), true)
	}
	f.Add([]byte{}, true)
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}, true)
	f.Add(manyGauges(fuzzMaxPoints+1).proto(f), true)

	f.Fuzz(func(t *testing.T, body []byte, doors bool) {
		var filter sources.Filter = sources.FilterFunc(checkoutDoors.Wants)
		if doors {
			filter = checkoutDoors
		}
		cfg := func(sink *sampleSink) otlp.Config {
			c := checkoutDiffConfig()
			c.Appender, c.Filter = sink, filter
			return c
		}
		streamSink, wholeSink := &sampleSink{}, &sampleSink{}
		stream := otlp.NewReceiver(cfg(streamSink)).Handler()
		whole := otlp.NewWholeReceiver(cfg(wholeSink)).Handler()
		for i := range 2 {
			got, want := postProto(stream, body), postProto(whole, body)
			if got.Code != want.Code {
				t.Fatalf("post %d: status %d, pdata whole %d (%q, %q)", i, got.Code, want.Code, got.Body, want.Body)
			}
			if got.Code == http.StatusOK && !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
				t.Fatalf("post %d: response %q, pdata whole %q", i, got.Body, want.Body)
			}
			if gs, ws := streamSink.take(), wholeSink.take(); !reflect.DeepEqual(gs, ws) {
				t.Fatalf("post %d: samples\n%v\npdata whole\n%v", i, gs, ws)
			}
		}
	})
}

func postProto(h http.Handler, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/v1/metrics", bytes.NewReader(body))
	req.Header.Set("Content-Type", ctProto)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}
