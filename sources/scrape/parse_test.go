package scrape

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/sources"
)

const (
	ctText   = "text/plain; version=0.0.4; charset=utf-8"
	ctOM     = "application/openmetrics-text; version=1.0.0; charset=utf-8"
	ctProto  = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
	scrapeMs = 1_700_000_000_000
)

func lbls(kv ...string) sources.Labels {
	var ls sources.Labels
	for i := 0; i+1 < len(kv); i += 2 {
		ls = append(ls, sources.Label{Name: kv[i], Value: kv[i+1]})
	}
	return ls.Sort()
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// protoBody is a delimited-protobuf exposition built by hand, so the test
// knows every field: a counter with a created timestamp and an integer native
// histogram whose buckets are delta-encoded, as client_golang writes them.
func protoBody(t testing.TB) []byte {
	t.Helper()
	fams := []*dto.MetricFamily{
		{
			Name: proto.String("http_requests_total"), Type: dto.MetricType_COUNTER.Enum(),
			Metric: []*dto.Metric{{
				Label:   []*dto.LabelPair{{Name: proto.String("code"), Value: proto.String("500")}},
				Counter: &dto.Counter{Value: proto.Float64(7), CreatedTimestamp: timestamppb.New(timeMs(scrapeMs - 1000))},
			}},
		},
		{
			Name: proto.String("rpc_seconds"), Type: dto.MetricType_HISTOGRAM.Enum(),
			Metric: []*dto.Metric{{
				Histogram: &dto.Histogram{
					SampleCount: proto.Uint64(7), SampleSum: proto.Float64(12.5),
					Schema: proto.Int32(0), ZeroThreshold: proto.Float64(1e-9), ZeroCount: proto.Uint64(1),
					// Prometheus indices 0, 1 and 3 with absolute counts 1, 3, 2.
					PositiveSpan:  []*dto.BucketSpan{{Offset: proto.Int32(0), Length: proto.Uint32(2)}, {Offset: proto.Int32(1), Length: proto.Uint32(1)}},
					PositiveDelta: []int64{1, 2, -1},
					// A classic bucket too: with a native histogram present it is ignored.
					Bucket: []*dto.Bucket{{UpperBound: proto.Float64(1), CumulativeCount: proto.Uint64(2)}},
				},
				TimestampMs: proto.Int64(scrapeMs - 5),
			}},
		},
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeProtoDelim))
	for _, f := range fams {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestParse(t *testing.T) {
	target := parseTarget{labels: lbls("job", "checkout", "instance", "a:9090", "version", "v2"), defaultMs: scrapeMs}
	tl := func(kv ...string) sources.Labels {
		return lbls(append([]string{"job", "checkout", "instance", "a:9090", "version", "v2"}, kv...)...)
	}
	tests := []struct {
		name        string
		body        []byte
		contentType string
		target      parseTarget
		want        []sources.PromPoint
		drops       map[string]int
	}{
		{
			name: "text", body: readTestdata(t, "text.prom"), contentType: ctText, target: target,
			want: []sources.PromPoint{
				{Labels: tl("__name__", "http_requests_total", "code", "200"), Type: model.MetricTypeCounter, TimestampMs: scrapeMs, Value: 1027},
				{Labels: tl("__name__", "http_requests_total", "code", "500"), Type: model.MetricTypeCounter, TimestampMs: 1_600_000_000_000, Value: 3},
				{Labels: tl("__name__", "rpc_seconds_bucket", "le", "0.1"), Type: model.MetricTypeHistogram, TimestampMs: scrapeMs, Value: 5},
				{Labels: tl("__name__", "rpc_seconds_bucket", "le", "+Inf"), Type: model.MetricTypeHistogram, TimestampMs: scrapeMs, Value: 8},
				{Labels: tl("__name__", "rpc_seconds_sum"), Type: model.MetricTypeHistogram, TimestampMs: scrapeMs, Value: 2.5},
				{Labels: tl("__name__", "rpc_seconds_count"), Type: model.MetricTypeHistogram, TimestampMs: scrapeMs, Value: 8},
				{Labels: tl("__name__", "pool_in_use", "exported_version", "v1"), Type: model.MetricTypeGauge, TimestampMs: scrapeMs, Value: 4},
				{Labels: tl("__name__", "untyped_thing"), Type: model.MetricTypeUnknown, TimestampMs: scrapeMs, Value: -1.5},
			},
		},
		{
			name: "openmetrics", body: readTestdata(t, "openmetrics.txt"), contentType: ctOM, target: target,
			want: []sources.PromPoint{
				{Labels: tl("__name__", "http_requests_total", "code", "200"), Type: model.MetricTypeCounter, TimestampMs: scrapeMs, CreatedMs: 1_699_999_999_000, Value: 1027},
				{Labels: tl("__name__", "http_requests_total", "code", "500"), Type: model.MetricTypeCounter, TimestampMs: scrapeMs, CreatedMs: 1_699_999_999_500, Value: 3},
				{Labels: tl("__name__", "rpc_seconds_bucket", "le", "0.1"), Type: model.MetricTypeHistogram, TimestampMs: scrapeMs, CreatedMs: 1_699_999_000_000, Value: 5},
				{Labels: tl("__name__", "rpc_seconds_bucket", "le", "+Inf"), Type: model.MetricTypeHistogram, TimestampMs: scrapeMs, CreatedMs: 1_699_999_000_000, Value: 8},
				{Labels: tl("__name__", "rpc_seconds_count"), Type: model.MetricTypeHistogram, TimestampMs: scrapeMs, CreatedMs: 1_699_999_000_000, Value: 8},
				{Labels: tl("__name__", "rpc_seconds_sum"), Type: model.MetricTypeHistogram, TimestampMs: scrapeMs, CreatedMs: 1_699_999_000_000, Value: 2.5},
				{Labels: tl("__name__", "pool_in_use"), Type: model.MetricTypeGauge, TimestampMs: 1_700_000_001_500, Value: 4},
			},
		},
		{
			name: "protobuf with a native histogram", body: protoBody(t), contentType: ctProto, target: target,
			want: []sources.PromPoint{
				{Labels: tl("__name__", "http_requests_total", "code", "500"), Type: model.MetricTypeCounter, TimestampMs: scrapeMs, CreatedMs: scrapeMs - 1000, Value: 7},
				{Labels: tl("__name__", "rpc_seconds"), Type: model.MetricTypeHistogram, TimestampMs: scrapeMs - 5, Histogram: &sources.PromHistogram{
					Count: 7, Sum: 12.5,
					Native: sources.NativeHistogram{Scale: 0, ZeroThreshold: 1e-9, ZeroCount: 1,
						Positive: sources.ExpBuckets{Offset: -1, Counts: []float64{1, 3, 0, 2}}},
				}},
			},
		},
		{
			name: "honor_labels keeps the exposed value", contentType: ctText,
			body:   []byte("pool_in_use{version=\"v1\",job=\"\"} 4\n"),
			target: parseTarget{labels: target.labels, honorLabels: true, defaultMs: scrapeMs},
			want: []sources.PromPoint{{Labels: lbls("__name__", "pool_in_use", "job", "checkout", "instance", "a:9090", "version", "v1"),
				Type: model.MetricTypeUnknown, TimestampMs: scrapeMs, Value: 4}},
		},
		{
			name: "no content type is text", contentType: "", target: target,
			body: []byte("up 1\n"),
			want: []sources.PromPoint{{Labels: tl("__name__", "up"), Type: model.MetricTypeUnknown, TimestampMs: scrapeMs, Value: 1}},
		},
		{
			name: "empty body", contentType: ctProto, target: target, body: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			drops := map[string]int{}
			got, err := parse(tt.body, tt.contentType, tt.target, drops)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("points:\n got %s\nwant %s", dumpPoints(got), dumpPoints(tt.want))
			}
			if tt.drops == nil {
				tt.drops = map[string]int{}
			}
			if !reflect.DeepEqual(drops, tt.drops) {
				t.Errorf("drops = %v, want %v", drops, tt.drops)
			}
		})
	}
}

func timeMs(ms int64) time.Time { return time.UnixMilli(ms) }

func dumpPoints(ps []sources.PromPoint) string {
	var b bytes.Buffer
	for _, p := range ps {
		b.WriteString("\n  ")
		b.WriteString(p.Labels.String())
		b.WriteString(" ")
		b.WriteString(string(p.Type))
		b.WriteString(" ")
		fmt.Fprintf(&b, "t=%d created=%d v=%v", p.TimestampMs, p.CreatedMs, p.Value)
		if p.Histogram != nil {
			fmt.Fprintf(&b, " h=%+v", *p.Histogram)
		}
	}
	return b.String()
}

func TestParseErrors(t *testing.T) {
	target := parseTarget{labels: lbls("job", "j", "instance", "a:1"), defaultMs: scrapeMs}
	tests := []struct {
		name, body, contentType string
		contentTypeErr          bool
	}{
		{name: "garbage text", body: "http_requests_total{code=\"200\" 1\n", contentType: ctText},
		{name: "bad value", body: "up one\n", contentType: ctText},
		{name: "openmetrics without EOF", body: "# TYPE up gauge\nup 1\n", contentType: ctOM},
		{name: "truncated protobuf", body: string(protoBody(t)[:40]), contentType: ctProto},
		{name: "json", body: "{}", contentType: "application/json", contentTypeErr: true},
		{name: "openmetrics 2.0", body: "# EOF\n", contentType: "application/openmetrics-text; version=2.0.0", contentTypeErr: true},
		{name: "text of an unknown version", body: "up 1\n", contentType: "text/plain; version=1.0.0", contentTypeErr: true},
		{name: "protobuf of another message", body: "", contentType: "application/vnd.google.protobuf; proto=foo.Bar; encoding=delimited", contentTypeErr: true},
		{name: "unparsable content type", body: "up 1\n", contentType: "text/plain; ;;", contentTypeErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pts, err := parse([]byte(tt.body), tt.contentType, target, map[string]int{})
			if err == nil {
				t.Fatalf("no error, points %s", dumpPoints(pts))
			}
			if pts != nil {
				t.Errorf("points returned with an error: %s", dumpPoints(pts))
			}
			if got := errors.Is(err, ErrUnsupportedContentType); got != tt.contentTypeErr {
				t.Errorf("error %q: content-type error = %v, want %v", err, got, tt.contentTypeErr)
			}
		})
	}
}

// Native histograms that cannot be converted are dropped and counted; the
// rest of the body still counts. Spans that disagree with their buckets are a
// corrupt body: the parser refuses all of it.
func TestParseInvalidNativeHistogram(t *testing.T) {
	tests := []struct {
		name    string
		h       *dto.Histogram
		refused bool
		reason  string
	}{
		{"custom buckets", &dto.Histogram{Schema: proto.Int32(-53), SampleCount: proto.Uint64(1), SampleSum: proto.Float64(1),
			PositiveSpan: []*dto.BucketSpan{{Offset: proto.Int32(0), Length: proto.Uint32(1)}}, PositiveDelta: []int64{1}}, false, sources.DropBadHistogram},
		{"schema out of range", &dto.Histogram{Schema: proto.Int32(9), SampleCount: proto.Uint64(1), SampleSum: proto.Float64(1),
			PositiveSpan: []*dto.BucketSpan{{Offset: proto.Int32(0), Length: proto.Uint32(1)}}, PositiveDelta: []int64{1}}, false, sources.DropBadHistogram},
		{"negative absolute count", &dto.Histogram{Schema: proto.Int32(0), SampleCount: proto.Uint64(1), SampleSum: proto.Float64(1),
			PositiveSpan: []*dto.BucketSpan{{Offset: proto.Int32(0), Length: proto.Uint32(2)}}, PositiveDelta: []int64{1, -2}}, false, sources.DropBadHistogram},
		{"spans and deltas disagree", &dto.Histogram{Schema: proto.Int32(0), SampleCount: proto.Uint64(1), SampleSum: proto.Float64(1),
			PositiveSpan: []*dto.BucketSpan{{Offset: proto.Int32(0), Length: proto.Uint32(3)}}, PositiveDelta: []int64{1}}, true, ""},
		{"billions of buckets", &dto.Histogram{Schema: proto.Int32(0), SampleCount: proto.Uint64(2), SampleSum: proto.Float64(1),
			PositiveSpan:  []*dto.BucketSpan{{Offset: proto.Int32(-2_000_000_000), Length: proto.Uint32(1)}, {Offset: proto.Int32(2_000_000_000), Length: proto.Uint32(1)}},
			PositiveDelta: []int64{1, 0}}, false, DropNativeTooWide},
		{"wider than 65536 buckets", &dto.Histogram{Schema: proto.Int32(8), SampleCount: proto.Uint64(2), SampleSum: proto.Float64(1),
			PositiveSpan:  []*dto.BucketSpan{{Offset: proto.Int32(0), Length: proto.Uint32(1)}, {Offset: proto.Int32(1 << 16), Length: proto.Uint32(1)}},
			PositiveDelta: []int64{1, 0}}, false, DropNativeTooWide},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeProtoDelim))
			for _, f := range []*dto.MetricFamily{
				{Name: proto.String("bad_seconds"), Type: dto.MetricType_HISTOGRAM.Enum(), Metric: []*dto.Metric{{Histogram: tt.h}}},
				{Name: proto.String("up"), Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(1)}}}},
			} {
				if err := enc.Encode(f); err != nil {
					t.Fatal(err)
				}
			}
			drops := map[string]int{}
			pts, err := parse(buf.Bytes(), ctProto, parseTarget{labels: lbls("job", "j", "instance", "a:1")}, drops)
			if tt.refused {
				if err == nil || pts != nil {
					t.Fatalf("corrupt body accepted: points %s, error %v", dumpPoints(pts), err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(pts) != 1 || pts[0].Labels.Get("__name__") != "up" {
				t.Errorf("points = %s, want only up", dumpPoints(pts))
			}
			if len(drops) != 1 || drops[tt.reason] != 1 {
				t.Errorf("drops = %v, want one %s", drops, tt.reason)
			}
		})
	}
}

func TestAcceptHeader(t *testing.T) {
	tests := []struct {
		protocols []string
		want      string
	}{
		{configs.DefaultScrapeConfig.ScrapeProtocols,
			"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5," +
				"application/openmetrics-text;version=1.0.0;q=0.4,application/openmetrics-text;version=0.0.1;q=0.3," +
				"text/plain;version=0.0.4;q=0.2,*/*;q=0.1"},
		{[]string{configs.ScrapeProtocolText004}, "text/plain;version=0.0.4;q=0.5,*/*;q=0.4"},
	}
	for _, tt := range tests {
		if got := acceptHeader(tt.protocols); got != tt.want {
			t.Errorf("acceptHeader(%v)\n got %s\nwant %s", tt.protocols, got, tt.want)
		}
	}
}

func TestTypeOf(t *testing.T) {
	b := pointBuilder{types: map[string]model.MetricType{
		"req":        model.MetricTypeCounter,
		"text_total": model.MetricTypeCounter,
		"rt":         model.MetricTypeHistogram,
		"g":          model.MetricTypeGauge,
	}}
	tests := map[string]model.MetricType{
		"req_total":  model.MetricTypeCounter,
		"req":        model.MetricTypeCounter,
		"text_total": model.MetricTypeCounter,
		"rt_bucket":  model.MetricTypeHistogram,
		"rt_count":   model.MetricTypeHistogram,
		"rt_total":   model.MetricTypeUnknown, // not a histogram's suffix
		"g_total":    model.MetricTypeUnknown,
		"g":          model.MetricTypeGauge,
		"other":      model.MetricTypeUnknown,
		"_":          model.MetricTypeUnknown,
	}
	for name, want := range tests {
		if got := b.typeOf(name); got != want {
			t.Errorf("typeOf(%q) = %q, want %q", name, got, want)
		}
	}
}

// One scrape may not ask for more than maxNativeBucketsPerScrape dense
// buckets in all: the histograms past the budget are dropped and counted.
func TestParseNativeBudget(t *testing.T) {
	const width = 60_000 // under maxNativeWidth; 17 of them fit the budget
	mf := &dto.MetricFamily{Name: proto.String("wide_seconds"), Type: dto.MetricType_HISTOGRAM.Enum()}
	for i := 0; i < 20; i++ {
		mf.Metric = append(mf.Metric, &dto.Metric{
			Label: []*dto.LabelPair{{Name: proto.String("i"), Value: proto.String(fmt.Sprint(i))}},
			Histogram: &dto.Histogram{Schema: proto.Int32(8), SampleCount: proto.Uint64(2), SampleSum: proto.Float64(1),
				PositiveSpan:  []*dto.BucketSpan{{Offset: proto.Int32(0), Length: proto.Uint32(1)}, {Offset: proto.Int32(width - 2), Length: proto.Uint32(1)}},
				PositiveDelta: []int64{1, 0}},
		})
	}
	var buf bytes.Buffer
	if err := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeProtoDelim)).Encode(mf); err != nil {
		t.Fatal(err)
	}
	drops := map[string]int{}
	pts, err := parse(buf.Bytes(), ctProto, parseTarget{labels: lbls("job", "j", "instance", "a:1")}, drops)
	if err != nil {
		t.Fatal(err)
	}
	fit := maxNativeBucketsPerScrape / width
	if len(pts) != fit || drops[DropNativeTooWide] != 20-fit {
		t.Errorf("%d histograms kept, drops %v; want %d kept and %d dropped", len(pts), drops, fit, 20-fit)
	}
	for _, p := range pts {
		if n := len(p.Histogram.Native.Positive.Counts); n != width {
			t.Errorf("dense width %d, want %d", n, width)
		}
	}
}
