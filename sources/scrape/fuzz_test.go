package scrape

import (
	"testing"
	"time"

	"github.com/rollguard/rollguard/sources"
)

// The fuzz targets feed arbitrary bodies to the parser under each content
// type. It must never panic; errors are fine, but an error must come with no
// points, and every point must carry the target's labels and a name.
func fuzzParse(f *testing.F, contentType string, seeds ...[]byte) {
	for _, s := range seeds {
		f.Add(s)
	}
	target := parseTarget{labels: lbls("instance", "a:1", "job", "fuzz"), defaultMs: scrapeMs}
	f.Fuzz(func(t *testing.T, body []byte) {
		pts, err := parse(body, contentType, target, map[string]int{})
		if err != nil {
			if pts != nil {
				t.Fatalf("points with an error: %v", err)
			}
			return
		}
		for _, p := range pts {
			if p.Labels.Get("job") == "" || p.Labels.Get("instance") == "" || p.Labels.Get("__name__") == "" {
				t.Fatalf("point without its target labels or name: %s", p.Labels)
			}
		}
		// What parses must also normalise without trouble, and nothing
		// non-finite or negative is counted (issue 13).
		conv := sources.NewPromConverter(nil, sources.Limits{MaxSeries: 1000, MaxSeriesPerVersion: 100, CohortLabels: []string{"job", "version"},
			MaxTimestampAhead: 10 * time.Minute, MaxBucketsPerHistogram: 64})
		out, _ := conv.Convert(pts, map[string]int{})
		for _, s := range out {
			if (s.Kind == sources.KindCounter && !sources.ValidCounter(s.Value)) || (s.Kind == sources.KindHistogram && !sources.ValidCounter(s.Count)) {
				t.Fatalf("invalid increment handed on: %+v", s)
			}
		}
	})
}

func FuzzParseText(f *testing.F) {
	fuzzParse(f, ctText,
		readTestdata(f, "text.prom"),
		[]byte("up 1\n"),
		[]byte("# TYPE x summary\nx{quantile=\"0.5\"} 1\nx_sum 2\nx_count 3\n"),
		[]byte("a{b=\"c\\\"\\n\"} +Inf 123\n"),
		[]byte("{\"utf8.name\", le=\"1\"} NaN\n"),
		benchBody(f, ctText, 20),
		// Hostile points (issue 13): NaN and negative counters, a point
		// from the year 2200, classic histograms that do not add up.
		[]byte("# TYPE c counter\nc{code=\"500\"} NaN\nc{code=\"400\"} -3\nc{code=\"502\"} 1e9 7258118400000\n"),
		[]byte("# TYPE h histogram\nh_bucket{le=\"0.1\"} 9\nh_bucket{le=\"1\"} 4\nh_bucket{le=\"+Inf\"} 9\nh_count 9\nh_sum 1\n"),
		[]byte("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 5\nh_count 7\nh_sum 1\nh_bucket{le=\"+Inf\"} 5\n"),
	)
}

func FuzzParseOpenMetrics(f *testing.F) {
	fuzzParse(f, ctOM,
		readTestdata(f, "openmetrics.txt"),
		[]byte("# EOF\n"),
		[]byte("# TYPE s stateset\ns{s=\"a\"} 1\n# EOF\n"),
		[]byte("# TYPE g gaugehistogram\ng_bucket{le=\"+Inf\"} 3\ng_gcount 3\ng_gsum 1\n# EOF\n"),
		[]byte("# TYPE c counter\nc_total 1 # {a=\"b\"} 1 2\nc_created 1\n# EOF\n"),
		benchBody(f, ctOM, 20),
	)
}

func FuzzParseProtobuf(f *testing.F) {
	fuzzParse(f, ctProto,
		protoBody(f),
		benchBody(f, ctProto, 20),
		[]byte{},
		[]byte{0x05, 0x0a, 0x03, 'a', 'b', 'c'},
	)
}
