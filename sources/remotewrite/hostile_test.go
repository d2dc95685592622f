package remotewrite_test

import (
	"math"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	writev2 "github.com/prometheus/client_golang/exp/api/remote/genproto/v2"

	"github.com/rollguard/rollguard/sources"
	"github.com/rollguard/rollguard/sources/remotewrite"
)

// reqs is the guarded counter of checkout, by version and code.
func reqs(version, code string, ts int64, v float64) series {
	return series{labels: lbls("__name__", "http_requests_total", "job", "checkout", "version", version, "code", code),
		typ: "counter", samples: []pt{{ts, v}}}
}

// Points that are the sender's error are refused one by one: the request is
// answered 400 with a message that names the first and why, the drop is
// counted by reason, and the healthy series beside it in the same request is
// written. Each hostile point has a healthy twin that passes.
func TestRefusePoints(t *testing.T) {
	year2200 := time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	good := reqs("v1", "200", 2000, 15)
	rt := func(h *writev2.Histogram) series {
		return series{labels: lbls("__name__", "rt", "job", "checkout"), typ: "histogram", created: 500, hists: []*writev2.Histogram{h}}
	}
	classic := func(le, suffix string, v float64) series {
		l := lbls("__name__", "lat"+suffix, "job", "checkout")
		if le != "" {
			l = append(l, "le", le)
		}
		return series{labels: l, typ: "histogram", family: "lat", samples: []pt{{2000, v}}}
	}
	cases := []struct {
		name    string
		hostile []series
		reason  string // "" for a healthy twin: 204, and written
		first   string // the series the message names
		want    []string
	}{
		{name: "NaN counter", hostile: []series{reqs("v2", "500", 2000, math.NaN())}, reason: sources.DropInvalidValue,
			first: `http_requests_total{code="500",job="checkout",version="v2"} at 2000`},
		{name: "+Inf counter", hostile: []series{reqs("v2", "500", 2000, math.Inf(1))}, reason: sources.DropInvalidValue},
		{name: "negative counter", hostile: []series{reqs("v2", "500", 2000, -3)}, reason: sources.DropInvalidValue},
		{name: "stale marker on a counter (healthy)", hostile: []series{reqs("v2", "500", 2000, staleNaN)}},
		{name: "year 2200", hostile: []series{reqs("v2", "500", year2200, 7)}, reason: sources.DropTooFarAhead},
		{name: "a minute ahead (healthy)", hostile: []series{reqs("v2", "500", time.Now().Add(time.Minute).UnixMilli(), 7)}},
		{name: "native buckets that do not add up", reason: sources.DropInconsistentHistogram, first: `rt{job="checkout"} at 1000`,
			hostile: []series{rt(intHistogram(1000, 0, 5, 0, 1.5, []*writev2.BucketSpan{span(1, 2)}, []int64{1, 1}, nil, nil))}},
		{name: "native buckets that add up (healthy)",
			hostile: []series{rt(intHistogram(1000, 0, 3, 0, 1.5, []*writev2.BucketSpan{span(1, 2)}, []int64{1, 1}, nil, nil))},
			want:    []string{`histogram rt{job="checkout"} @1000 count=3 sum=1.5 native=scale:0 zt:0.001 zc:0 pos:0[1 2] neg:0[]`}},
		{name: "native float count NaN", reason: sources.DropInvalidValue,
			hostile: []series{rt(floatHistogram(1000, 0, math.NaN(), 0, 1, []*writev2.BucketSpan{span(1, 1)}, []float64{1}))}},
		{name: "native histogram over the bucket limit", reason: sources.DropTooManyBuckets,
			hostile: []series{rt(intHistogram(1000, 0, 4, 0, 1, []*writev2.BucketSpan{span(1, 4)}, []int64{1, 0, 0, 0}, nil, nil))}},
		{name: "classic buckets going down", reason: sources.DropInconsistentHistogram,
			hostile: []series{classic("0.1", "_bucket", 5), classic("1", "_bucket", 3), classic("+Inf", "_bucket", 5), classic("", "_count", 5)}},
		{name: "classic +Inf bucket other than the count", reason: sources.DropInconsistentHistogram,
			hostile: []series{classic("0.1", "_bucket", 1), classic("+Inf", "_bucket", 5), classic("", "_count", 6)}},
		{name: "classic histogram that adds up (healthy)",
			hostile: []series{classic("0.1", "_bucket", 1), classic("+Inf", "_bucket", 5), classic("", "_count", 5)}},
		{name: "classic histogram over the bucket limit", reason: sources.DropTooManyBuckets,
			hostile: []series{classic("0.1", "_bucket", 1), classic("0.2", "_bucket", 1), classic("0.5", "_bucket", 2),
				classic("1", "_bucket", 3), classic("+Inf", "_bucket", 4)}},
	}
	for _, p := range protocols {
		for _, tc := range cases {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				f := newFixture(t, remotewrite.Config{MaxBucketsPerHistogram: 4})
				if resp := f.send(p.build(reqs("v1", "200", 1000, 10))); resp.code != 204 {
					t.Fatalf("base: %d %s", resp.code, resp.body)
				}
				resp := f.send(p.build(append([]series{good}, tc.hostile...)...))
				got := f.rec.got()
				if len(got) == 0 || got[0] != `counter http_requests_total{code="200",job="checkout",version="v1"} @2000 = 5` {
					t.Errorf("the healthy series was not written: %v", got)
				}
				if p.name == "2.0" && tc.want != nil && !equal(got[1:], tc.want) { // 1.0 has no created timestamps: a base only
					t.Errorf("appended %v, want %v", got[1:], tc.want)
				}
				if tc.reason == "" {
					if resp.code != 204 {
						t.Fatalf("healthy twin: %d %s", resp.code, resp.body)
					}
					for _, reason := range []string{sources.DropInvalidValue, sources.DropInconsistentHistogram, sources.DropTooManyBuckets, sources.DropTooFarAhead} {
						if n := f.counter("rollguard_remotewrite_dropped_total", "reason", reason); n != 0 {
							t.Errorf("healthy twin dropped %v as %s", n, reason)
						}
					}
					return
				}
				if resp.code != 400 || !strings.Contains(resp.body, ": "+tc.reason+" (") || !strings.Contains(resp.body, "the rest of the request was written") {
					t.Fatalf("got %d %q, want 400 naming %s", resp.code, resp.body, tc.reason)
				}
				if tc.first != "" && !strings.Contains(resp.body, "first "+tc.first+": ") {
					t.Errorf("message %q does not name %s", resp.body, tc.first)
				}
				if n := f.counter("rollguard_remotewrite_dropped_total", "reason", tc.reason); n != float64(len(tc.hostile)) {
					t.Errorf("dropped{reason=%q} = %v, want %d", tc.reason, n, len(tc.hostile))
				}
				if len(got) != 1 {
					t.Errorf("refused points were handed on: %v", got[1:])
				}
				if p.name == "2.0" && resp.written[0] != "1" {
					t.Errorf("samples written header = %q, want 1 (the healthy series)", resp.written[0])
				}
			})
		}
	}
}

// One point from the year 2200 does not blind its series: before the fix it
// became the series' last point and every later point was dropped as out of
// order, silently, with 204.
func TestYear2200DoesNotBlind(t *testing.T) {
	year2200 := time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			f := newFixture(t, remotewrite.Config{})
			steps := []struct {
				s    series
				code int
			}{
				{reqs("v2", "500", 1000, 10), 204},
				{reqs("v2", "500", year2200, 1e9), 400},
				{reqs("v2", "500", 2000, 14), 204},
				{reqs("v2", "500", 3000, 20), 204},
			}
			for i, st := range steps {
				if resp := f.send(p.build(st.s)); resp.code != st.code {
					t.Fatalf("step %d: %d %s, want %d", i, resp.code, resp.body, st.code)
				}
			}
			want := []string{
				`counter http_requests_total{code="500",job="checkout",version="v2"} @2000 = 4`,
				`counter http_requests_total{code="500",job="checkout",version="v2"} @3000 = 6`,
			}
			if got := f.rec.got(); !equal(got, want) {
				t.Errorf("appended:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if n := f.counter("rollguard_remotewrite_dropped_total", "reason", sources.DropTooFarAhead); n != 1 {
				t.Errorf("too_far_ahead = %v, want 1", n)
			}
		})
	}
}

// The same series twice in one request, at the same timestamp, counts
// once: the later copy is dropped (duplicate), whatever its value; before,
// a lower second value counted as a reset and was added in full. A series
// with two timestamps in one request counts both (healthy twin).
func TestDuplicateSeriesCountOnce(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			f := newFixture(t, remotewrite.Config{})
			if resp := f.send(p.build(reqs("v2", "500", 1000, 10))); resp.code != 204 {
				t.Fatalf("base: %d %s", resp.code, resp.body)
			}
			resp := f.send(p.build(reqs("v2", "500", 2000, 14), reqs("v2", "500", 2000, 14), reqs("v2", "500", 2000, 3)))
			if resp.code != 204 {
				t.Fatalf("duplicates: %d %s", resp.code, resp.body)
			}
			twice := reqs("v2", "500", 3000, 15)
			twice.samples = append(twice.samples, pt{4000, 17})
			if resp := f.send(p.build(twice)); resp.code != 204 {
				t.Fatalf("two points: %d %s", resp.code, resp.body)
			}
			want := []string{
				`counter http_requests_total{code="500",job="checkout",version="v2"} @2000 = 4`,
				`counter http_requests_total{code="500",job="checkout",version="v2"} @3000 = 1`,
				`counter http_requests_total{code="500",job="checkout",version="v2"} @4000 = 2`,
			}
			if got := f.rec.got(); !equal(got, want) {
				t.Errorf("appended:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if n := f.counter("rollguard_remotewrite_dropped_total", "reason", sources.DropDuplicate); n != 2 {
				t.Errorf("duplicate = %v, want 2", n)
			}
		})
	}
}

// A request with more samples than MaxPointsPerRequest is refused whole
// with 413 before any of it is kept; one at the limit is written.
func TestPointsPerRequest(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			f := newFixture(t, remotewrite.Config{MaxPointsPerRequest: 3})
			over := reqs("v2", "500", 1000, 10)
			over.samples = append(over.samples, pt{2000, 11}, pt{3000, 12})
			resp := f.send(p.build(reqs("v1", "200", 1000, 1), over))
			want := "remote write " + p.name + " request carries more than 3 samples and histogram samples (limits.max_points_per_request): nothing was written; send smaller requests (queue_config.max_samples_per_send)"
			if resp.code != 413 || resp.body != want {
				t.Fatalf("got %d %q\nwant 413 %q", resp.code, resp.body, want)
			}
			if p.name == "2.0" && resp.written != [3]string{"0", "0", "0"} {
				t.Errorf("written headers %q", resp.written)
			}
			if got := f.rec.got(); len(got) != 0 {
				t.Fatalf("a refused request handed on %v", got)
			}
			// At the limit: written (the counter's later points count).
			if resp := f.send(p.build(over)); resp.code != 204 {
				t.Fatalf("at the limit: %d %s", resp.code, resp.body)
			}
			if got := f.rec.got(); len(got) != 2 {
				t.Errorf("at the limit appended %v, want the 2 increments", got)
			}
		})
	}
}

// A flood of junk series of one version fills that version's budget only:
// the canary's series, new after the flood, are still tracked; before,
// one budget served every version and the canary was refused
// (series_limit). Series of a version within its budget go on (healthy).
func TestVersionSeriesBudget(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			f := newFixture(t, remotewrite.Config{MaxSeries: 1000, MaxSeriesPerVersion: 100, VersionLabels: []string{"job", "version"}})
			if resp := f.send(p.build(reqs("v1", "200", 1000, 10))); resp.code != 204 {
				t.Fatal(resp.body)
			}
			var junk []series
			for i := range 2000 {
				s := reqs("v1", "200", 1000, 1)
				s.labels = append(s.labels, "path", "/junk/"+itoa(int64(i)))
				junk = append(junk, s)
			}
			if resp := f.send(p.build(junk...)); resp.code != 204 {
				t.Fatalf("junk: %d %s", resp.code, resp.body)
			}
			if n := f.counter("rollguard_remotewrite_dropped_total", "reason", sources.DropVersionSeriesLimit); n != 2000-99 {
				t.Errorf("version_series_limit = %v, want %d", n, 2000-99)
			}
			created := time.Now().Add(-time.Minute).UnixMilli()
			canary := func(ts int64, v float64) series {
				s := reqs("v2", "500", ts, v)
				s.created = created // 2.0: a fresh series counts in full
				return s
			}
			now := time.Now().UnixMilli()
			for i, s := range []series{canary(now, 3), canary(now+1000, 5), reqs("v1", "200", 2000, 12)} {
				if resp := f.send(p.build(s)); resp.code != 204 {
					t.Fatalf("request %d: %d %s", i, resp.code, resp.body)
				}
			}
			got := strings.Join(f.rec.got(), "\n")
			for _, want := range []string{`version="v2"} @` + itoa(now+1000) + ` = 2`, `version="v1"} @2000 = 2`} {
				if !strings.Contains(got, want) {
					t.Errorf("no %s in:\n%s", want, got)
				}
			}
			if n := f.counter("rollguard_remotewrite_dropped_total", "reason", sources.DropSeriesLimit); n != 0 {
				t.Errorf("series_limit = %v, want 0", n)
			}
		})
	}
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }

// A series without a metric name, or a native histogram that does not add
// up, is refused with 400 whether a guard reads it or not, naming it; the
// rest of the request is written and handed on. Twin: the same request
// without them is a 204.
func TestSpecRefusalsBeforeTheDoor(t *testing.T) {
	gauge := series{labels: lbls("__name__", "pool_in_use", "job", "checkout"), typ: "gauge", samples: []pt{{1000, 3}}}
	noName := series{labels: lbls("job", "checkout", "instance", "a"), typ: "gauge", samples: []pt{{1000, 1}}}
	emptyName := series{labels: lbls("__name__", "", "job", "checkout"), typ: "gauge", samples: []pt{{1000, 1}}}
	badCount := series{labels: lbls("__name__", "nrt", "job", "other"), typ: "histogram", hists: []*writev2.Histogram{
		intHistogram(1000, 0, 99, 0, 1, []*writev2.BucketSpan{span(0, 2)}, []int64{1, 1}, nil, nil)}}
	for _, p := range protocols {
		for _, tc := range []struct {
			name    string
			filter  sources.Filter
			bad     []series
			msg     string
			written [3]int
		}{
			{"no name, unguarded", sources.FilterFunc(func(m string) bool { return m == "pool_in_use" }), []series{noName, emptyName},
				`400 2 of the request's samples refused, first {instance="a",job="checkout"} at 1000: no_metric_name (a series without a metric name (a __name__ label with a value): the specification requires one); the rest of the request was written`,
				[3]int{1, 0, 0}},
			{"histogram count, unguarded", sources.FilterFunc(func(m string) bool { return m == "pool_in_use" }), []series{badCount},
				`400 1 of the request's samples refused, first nrt{job="other"} at 1000: inconsistent_histogram (histogram buckets that do not add up to the count, or cumulative buckets that go down); the rest of the request was written`,
				[3]int{1, 0, 0}},
			{"histogram count, guarded", nil, []series{badCount},
				`400 1 of the request's samples refused, first nrt{job="other"} at 1000: inconsistent_histogram (histogram buckets that do not add up to the count, or cumulative buckets that go down); the rest of the request was written`,
				[3]int{1, 0, 0}},
		} {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				for _, twin := range []bool{false, true} {
					f := newFixture(t, remotewrite.Config{Filter: tc.filter})
					ss := append([]series{gauge}, tc.bad...)
					want := tc.msg
					if twin {
						ss, want = []series{gauge}, "204 "
					}
					resp := f.send(p.build(ss...))
					if got := strconv.Itoa(resp.code) + " " + resp.body; got != want {
						t.Fatalf("twin %v: answered\n%s\nwant\n%s", twin, got, want)
					}
					if p.name == "2.0" && resp.written != [3]string{strconv.Itoa(tc.written[0]), strconv.Itoa(tc.written[1]), strconv.Itoa(tc.written[2])} {
						t.Errorf("twin %v: written %q, want %v", twin, resp.written, tc.written)
					}
					if got := f.rec.got(); !equal(got, []string{`gauge pool_in_use{job="checkout"} @1000 = 3`}) {
						t.Errorf("twin %v: handed on %q", twin, got)
					}
				}
			})
		}
	}
}

// A label the specification forbids (an empty name, a name or value that is
// not UTF-8, a name twice) is refused with 400 whether a guard reads its
// series or not, naming the series as sent; the rest of the request is
// written (2.0 headers) and handed on. Twin: the same request without it —
// labels of non-ASCII UTF-8, and many distinct names — is a 204.
func TestLabelRefusalsBeforeTheDoor(t *testing.T) {
	gauge := series{labels: lbls("__name__", "pool_in_use", "job", "checkout"), typ: "gauge", samples: []pt{{1000, 3}}}
	accented := series{labels: lbls("__name__", "pool_in_use", "job", "zürich", "größe", "日本"), typ: "gauge", samples: []pt{{1000, 5}}}
	other := series{labels: lbls("__name__", "node_load1", "job", "zürich", "größe", "日本"), typ: "gauge", samples: []pt{{1000, 7}}}
	wide := series{labels: manyLabels("node_wide", 64), typ: "gauge", samples: []pt{{1000, 9}}}
	bad := func(kv ...string) series { return series{labels: kv, typ: "gauge", samples: []pt{{1000, 1}}} }
	const (
		invalid   = "invalid_label (a label with an empty name, or a label name or value that is not UTF-8: the specification requires non-empty UTF-8 names and UTF-8 values)"
		duplicate = "duplicate_label (two labels of the same name: the specification requires label names to be unique within a series)"
	)
	cases := []struct {
		name   string
		bad    series
		reason string
		msg    string // the series and the reason
	}{
		{"empty label name", bad("__name__", "node_load1", "job", "node", "", "x"), sources.DropInvalidLabel,
			`node_load1{""="x",job="node"} at 1000: ` + invalid},
		{"empty label name, empty value", bad("__name__", "node_load1", "", "", "job", "node"), sources.DropInvalidLabel,
			`node_load1{""="",job="node"} at 1000: ` + invalid},
		{"label name not UTF-8", bad("__name__", "node_load1", "job", "node", "zo\xffne", "a"), sources.DropInvalidLabel,
			`node_load1{job="node","zo\xffne"="a"} at 1000: ` + invalid},
		{"label value not UTF-8", bad("__name__", "node_load1", "job", "no\xffde"), sources.DropInvalidLabel,
			`node_load1{job="no\xffde"} at 1000: ` + invalid},
		{"long label value not UTF-8", bad("__name__", "node_load1", "job", strings.Repeat("n", 200)+"\xc3"), sources.DropInvalidLabel,
			`node_load1{job="` + strings.Repeat("n", 200) + `\xc3"} at 1000: ` + invalid},
		{"metric name not UTF-8", bad("__name__", "node_\xff", "job", "node"), sources.DropInvalidLabel,
			`node_\xff{job="node"} at 1000: ` + invalid},
		{"label name twice", bad("__name__", "node_load1", "job", "node", "instance", "a", "job", "other"), sources.DropDuplicateLabel,
			`node_load1{instance="a",job="node",job="other"} at 1000: ` + duplicate},
		{"label name twice, once of empty value", bad("__name__", "node_load1", "job", "node", "job", ""), sources.DropDuplicateLabel,
			`node_load1{job="node",job=""} at 1000: ` + duplicate},
		{"metric name twice", bad("__name__", "node_load1", "__name__", "node_load5", "job", "node"), sources.DropDuplicateLabel,
			`node_load1{__name__="node_load5",job="node"} at 1000: ` + duplicate},
		{"label name twice among many", bad(append(manyLabels("node_wide", 40), "l17", "w")...), sources.DropDuplicateLabel,
			`node_wide{l1="v",l10="v",l11="v",l12="v",l13="v",l14="v",l15="v",l16="v",l17="v",l17="w",l18="v",l19="v",l2="v",l20="v",l21="v",l22="v",l23="v",l24="v",l25="v",l26="v",l27="v",l28="v",l29="v",l3="v",l30="v",l31="v",l32="v",l33="v",l34="v",l35="v",l36="v",l37="v",l38="v",l39="v",l4="v",l5="v",l6="v",l7="v",l8="v",l9="v"} at 1000: ` + duplicate},
	}
	for _, p := range protocols {
		for _, guard := range []struct {
			name   string
			filter sources.Filter
			want   []string // handed on, sorted
		}{
			{"unguarded", sources.FilterFunc(func(m string) bool { return m == "pool_in_use" }), []string{
				`gauge pool_in_use{größe="日本",job="zürich"} @1000 = 5`,
				`gauge pool_in_use{job="checkout"} @1000 = 3`,
			}},
			{"guarded", nil, []string{
				`gauge node_load1{größe="日本",job="zürich"} @1000 = 7`,
				`gauge node_wide{` + wideLabels(64) + `} @1000 = 9`,
				`gauge pool_in_use{größe="日本",job="zürich"} @1000 = 5`,
				`gauge pool_in_use{job="checkout"} @1000 = 3`,
			}},
		} {
			for _, tc := range cases {
				t.Run(p.name+"/"+guard.name+"/"+tc.name, func(t *testing.T) {
					for _, twin := range []bool{false, true} {
						f := newFixture(t, remotewrite.Config{Filter: guard.filter})
						ss := []series{gauge, accented, other, wide, tc.bad}
						want := "400 1 of the request's samples refused, first " + tc.msg + "; the rest of the request was written"
						if twin {
							ss, want = ss[:4], "204 "
						}
						resp := f.send(p.build(ss...))
						if got := strconv.Itoa(resp.code) + " " + resp.body; got != want {
							t.Fatalf("twin %v: answered\n%s\nwant\n%s", twin, got, want)
						}
						if p.name == "2.0" && resp.written != [3]string{"4", "0", "0"} {
							t.Errorf("twin %v: written %q, want 4 samples", twin, resp.written)
						}
						got := f.rec.got()
						sort.Strings(got)
						if !equal(got, guard.want) {
							t.Errorf("twin %v: handed on\n%s\nwant\n%s", twin, strings.Join(got, "\n"), strings.Join(guard.want, "\n"))
						}
						refused := 1.0
						if twin {
							refused = 0
						}
						if n := f.counter("rollguard_remotewrite_dropped_total", "reason", tc.reason); n != refused {
							t.Errorf("twin %v: dropped %s = %v, want %v", twin, tc.reason, n, refused)
						}
					}
				})
			}
		}
	}
}

// wideLabels are the labels of manyLabels(name, n) but the name, as a
// handed-on sample shows them.
func wideLabels(n int) string {
	names := make([]string, 0, n-1)
	for i := 1; i < n; i++ {
		names = append(names, "l"+strconv.Itoa(i))
	}
	sort.Strings(names)
	return strings.Join(names, `="v",`) + `="v"`
}
