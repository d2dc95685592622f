package remotewrite_test

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	writev2 "github.com/prometheus/client_golang/exp/api/remote/genproto/v2"
	"github.com/prometheus/prometheus/prompb"

	"github.com/rollguard/rollguard/sources"
	"github.com/rollguard/rollguard/sources/remotewrite"
)

var update = flag.Bool("update", false, "rewrite the fuzz seed corpus under testdata/fuzz")

// seedSeries are valid series of every kind the receiver handles.
func seedSeries() []series {
	return []series{
		{labels: lbls("__name__", "http_requests_total", "job", "checkout", "code", "500"), typ: "counter", created: 1,
			samples: []pt{{1000, 1}, {2000, 5}}, exemplars: 1},
		{labels: lbls("__name__", "pool_in_use", "job", "checkout"), typ: "gauge", samples: []pt{{1000, 3}, {2000, staleNaN}}},
		{labels: lbls("__name__", "rt_bucket", "le", "0.1"), typ: "histogram", family: "rt", samples: []pt{{1000, 1}}},
		{labels: lbls("__name__", "rt_bucket", "le", "+Inf"), typ: "histogram", family: "rt", samples: []pt{{1000, 2}}},
		{labels: lbls("__name__", "rt_count"), typ: "histogram", family: "rt", samples: []pt{{1000, 2}}},
		{labels: lbls("__name__", "rt_sum"), typ: "histogram", family: "rt", samples: []pt{{1000, 0.3}}},
		{labels: lbls("__name__", "nrt", "job", "checkout"), typ: "histogram", hists: []*writev2.Histogram{
			intHistogram(1000, 0, 7, 1, 10, []*writev2.BucketSpan{span(0, 2), span(1, 1)}, []int64{1, 1, -1}, []*writev2.BucketSpan{span(0, 1)}, []int64{2}),
			intHistogram(2000, 0, 13, 2, 20, []*writev2.BucketSpan{span(0, 2), span(1, 1)}, []int64{2, 1, 0}, []*writev2.BucketSpan{span(0, 1)}, []int64{3}),
		}},
		{labels: lbls("__name__", "frt"), typ: "gaugehistogram", hists: []*writev2.Histogram{
			floatHistogram(1000, -2, 4, 0, 3, []*writev2.BucketSpan{span(-1, 2)}, []float64{1.5, 2.5}),
		}},
		{labels: lbls("__name__", "rpc_seconds", "quantile", "0.5"), typ: "summary", samples: []pt{{1000, 0.2}}},
	}
}

// fuzzSeeds are named request bodies (before snappy) for one protocol:
// valid requests, then hostile ones.
func fuzzSeeds(t testing.TB, v2 bool) map[string][]byte {
	seeds := map[string][]byte{}
	if v2 {
		for i, s := range seedSeries() {
			seeds["series_"+strconv.Itoa(i)] = marshal(t, v2Request(s))
		}
		seeds["all_series"] = marshal(t, v2Request(seedSeries()...))
		seeds["odd_refs"] = marshal(t, &writev2.Request{Symbols: []string{"", "__name__", "up"},
			Timeseries: []*writev2.TimeSeries{{LabelsRefs: []uint32{1, 2, 1}}}})
		seeds["custom_buckets"] = marshal(t, v2Request(series{labels: lbls("__name__", "rt"), hists: []*writev2.Histogram{
			{Schema: -53, CustomValues: []float64{1}, PositiveSpans: []*writev2.BucketSpan{span(0, 2)}, PositiveDeltas: []int64{1, 0}}}}))
		start := v2Request(seedSeries()[0])
		withStartTimestamp(start.Timeseries[0].Samples[0], 500)
		seeds["start_timestamp"] = marshal(t, start)
	} else {
		for i, s := range seedSeries() {
			seeds["series_"+strconv.Itoa(i)] = marshal(t, v1Request(s))
		}
		seeds["all_series"] = marshal(t, v1Request(seedSeries()...))
		seeds["metadata_only"] = marshal(t, &prompb.WriteRequest{Metadata: []prompb.MetricMetadata{{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "requests"}}})
		seeds["invalid_utf8"] = marshal(t, v1Request(series{labels: lbls("__name__", "up", "path", "\xff"), samples: []pt{{1000, 2}}}))
	}
	// Hostile points (issue 13), the same for both: each must be refused
	// (400) or counted, never handed on as a non-finite or negative count.
	build := func(ss ...series) []byte {
		if v2 {
			return marshal(t, v2Request(ss...))
		}
		return marshal(t, v1Request(ss...))
	}
	ctr := func(ts int64, v float64) series {
		return series{labels: lbls("__name__", "http_requests_total", "job", "checkout", "code", "500"), typ: "counter", created: 1, samples: []pt{{ts, v}}}
	}
	rt := func(le string, v float64) series {
		return series{labels: lbls("__name__", "rt_bucket", "le", le), typ: "histogram", family: "rt", samples: []pt{{1000, v}}}
	}
	seeds["nan_counter"] = build(ctr(1000, 1), ctr(2000, math.NaN()))
	seeds["negative_counter"] = build(ctr(1000, -5))
	seeds["stale_counter"] = build(ctr(1000, 1), ctr(2000, staleNaN))
	seeds["year_2200"] = build(ctr(1000, 1), ctr(7258118400000, 1e9), ctr(3000, 4))
	seeds["duplicate_series"] = build(ctr(1000, 10), ctr(1000, 10), ctr(1000, 3))
	// Labels the specification forbids (issue 16), each after a healthy
	// series, and their healthy twin: refused (400) guarded or not.
	gauge := func(kv ...string) series { return series{labels: kv, typ: "gauge", samples: []pt{{1000, 1}}} }
	seeds["label_empty_name"] = build(ctr(1000, 1), gauge("__name__", "node_load1", "", "x"))
	seeds["label_name_not_utf8"] = build(ctr(1000, 1), gauge("__name__", "node_load1", "zo\xffne", "a"))
	seeds["label_value_not_utf8"] = build(ctr(1000, 1), gauge("__name__", "node_load1", "job", "no\xffde"))
	seeds["metric_name_not_utf8"] = build(ctr(1000, 1), gauge("__name__", "node_\xff", "job", "node"))
	seeds["label_name_twice"] = build(ctr(1000, 1), gauge("__name__", "node_load1", "job", "node", "job", "other"))
	seeds["metric_name_twice"] = build(ctr(1000, 1), gauge("__name__", "node_load1", "__name__", "node_load5"))
	seeds["label_utf8_distinct"] = build(ctr(1000, 1), gauge("__name__", "node_load1", "job", "zürich", "größe", "日本"))
	seeds["classic_buckets_down"] = build(rt("0.1", 5), rt("1", 3), rt("+Inf", 5),
		series{labels: lbls("__name__", "rt_count"), typ: "histogram", family: "rt", samples: []pt{{1000, 5}}})
	seeds["classic_inf_not_count"] = build(rt("+Inf", 5),
		series{labels: lbls("__name__", "rt_count"), typ: "histogram", family: "rt", samples: []pt{{1000, 6}}})
	nrt := func(h *writev2.Histogram) series {
		return series{labels: lbls("__name__", "nrt", "job", "checkout"), typ: "histogram", created: 1, hists: []*writev2.Histogram{h}}
	}
	seeds["native_count_mismatch"] = build(nrt(intHistogram(1000, 0, 9, 0, 1, []*writev2.BucketSpan{span(0, 2)}, []int64{1, 1}, nil, nil)))
	seeds["native_nan_count"] = build(nrt(floatHistogram(1000, 0, math.NaN(), 0, 1, []*writev2.BucketSpan{span(0, 1)}, []float64{1})))
	many := make([]int64, 3000)
	many[0] = 1
	seeds["native_too_many_buckets"] = build(nrt(intHistogram(1000, 0, 3000, 0, 1, []*writev2.BucketSpan{span(0, 3000)}, many, nil, nil)))
	// The compliance suite's requests (compliance_test.go), stamped at a
	// fixed time; 1.0 gets those of float samples.
	now := time.UnixMilli(1_700_000_000_000)
	for _, c := range complianceCases() {
		if c.build != nil {
			continue
		}
		name := "compliance_" + strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
				return r
			}
			return '_'
		}, c.name)
		if v2 {
			seeds[name] = marshal(t, complianceRequest(c.series, now))
		} else if req, ok := complianceV1Request(c.series, now); ok {
			seeds[name] = marshal(t, req)
		}
	}
	// Hostile framing, the same for both.
	seeds["empty"] = []byte{}
	seeds["huge_length"] = []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}
	seeds["deep_groups"] = bytes.Repeat([]byte{0x0b}, 2000) // start-group tags without end
	seeds["field_zero"] = []byte{0x00, 0x01}
	return seeds
}

// TestFuzzSeedCorpus keeps testdata/fuzz in step with fuzzSeeds; -update
// rewrites it.
func TestFuzzSeedCorpus(t *testing.T) {
	for target, v2 := range map[string]bool{"FuzzRemoteWriteV1": false, "FuzzRemoteWriteV2": true} {
		dir := filepath.Join("testdata", "fuzz", target)
		seeds := fuzzSeeds(t, v2)
		names := make([]string, 0, len(seeds))
		for name := range seeds {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			file := filepath.Join(dir, name)
			want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", seeds[name])
			if *update {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, []byte(want), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(file)
			if err != nil || string(got) != want {
				t.Errorf("%s is missing or stale (%v): run go test ./sources/remotewrite -run TestFuzzSeedCorpus -update", file, err)
			}
		}
	}
}

func FuzzRemoteWriteV1(f *testing.F) { fuzzRemoteWrite(f, ctV1, false) }

func FuzzRemoteWriteV2(f *testing.F) { fuzzRemoteWrite(f, ctV2, true) }

// fuzzRemoteWrite posts arbitrary bytes, snappy-encoded, twice to a fresh
// receiver (so the second meets the state the first left), then once as
// they are (arbitrary snappy). It must never panic nor answer 5xx, and
// what it hands on must be well-formed.
func fuzzRemoteWrite(f *testing.F, contentType string, v2 bool) {
	for _, seed := range fuzzSeeds(f, v2) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		app := &checkingAppender{t: t}
		h := remotewrite.NewReceiver(remotewrite.Config{Appender: app, MaxDecodedBytes: 1 << 20, MaxSeries: 1000}).Handler()
		for i, body := range [][]byte{snappy.Encode(nil, data), snappy.Encode(nil, data), data} {
			req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
			req.Header.Set("Content-Type", contentType)
			req.Header.Set("Content-Encoding", "snappy")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			switch w.Code {
			case http.StatusNoContent, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			default:
				t.Fatalf("post %d: status %d: %s", i, w.Code, w.Body)
			}
			if !v2 {
				continue
			}
			for _, hdr := range []string{remotewrite.HeaderSamplesWritten, remotewrite.HeaderHistogramsWritten, remotewrite.HeaderExemplarsWritten} {
				// A 400 for refused points says what of the rest was written;
				// every other refusal wrote nothing.
				partial := w.Code == http.StatusBadRequest && strings.Contains(w.Body.String(), "the rest of the request was written")
				if n, err := strconv.Atoi(w.Header().Get(hdr)); err != nil || n < 0 || (w.Code != http.StatusNoContent && !partial && n != 0) {
					t.Fatalf("post %d: %d with %s: %q", i, w.Code, hdr, w.Header().Get(hdr))
				}
			}
		}
	})
}

// checkingAppender fails the fuzz input when a sample is malformed.
type checkingAppender struct{ t *testing.T }

func (a *checkingAppender) Append(samples []sources.Sample) error {
	for _, s := range samples {
		if s.Metric == "" || s.Kind < sources.KindCounter || s.Kind > sources.KindHistogram {
			a.t.Fatalf("malformed sample %+v", s)
		}
		// Nothing non-finite or negative is counted (issue 13).
		switch {
		case s.Kind == sources.KindCounter && !sources.ValidCounter(s.Value):
			a.t.Fatalf("counter increment %v handed on: %+v", s.Value, s)
		case s.Kind == sources.KindHistogram && !sources.ValidCounter(s.Count):
			a.t.Fatalf("histogram count %v handed on: %+v", s.Count, s)
		}
		for i, l := range s.Labels {
			if l.Name == "" || l.Value == "" || l.Name == "__name__" || (i > 0 && s.Labels[i-1].Name >= l.Name) {
				a.t.Fatalf("labels not normalised: %s", s.Labels)
			}
		}
	}
	return nil
}

// complianceV1Request is a compliance case's request in 1.0, if its series
// are all of float samples.
func complianceV1Request(ss []cSeries, now time.Time) (*prompb.WriteRequest, bool) {
	labels := func(kv []string) []prompb.Label {
		var out []prompb.Label
		for i := 0; i+1 < len(kv); i += 2 {
			out = append(out, prompb.Label{Name: kv[i], Value: kv[i+1]})
		}
		return out
	}
	req := &prompb.WriteRequest{}
	for _, s := range ss {
		if s.hist != nil || s.none {
			return nil, false
		}
		ts := prompb.TimeSeries{Labels: labels(s.labels), Samples: []prompb.Sample{{Value: s.value, Timestamp: now.Add(s.offset).UnixMilli()}}}
		for _, e := range s.exemplars {
			ts.Exemplars = append(ts.Exemplars, prompb.Exemplar{Labels: labels(e.labels), Value: e.value, Timestamp: now.Add(e.offset).UnixMilli()})
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	return req, true
}
