package remotewrite_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/exp/api/remote"
	writev2 "github.com/prometheus/client_golang/exp/api/remote/genproto/v2"

	"github.com/rollguard/rollguard/sources"
	"github.com/rollguard/rollguard/sources/remotewrite"
)

// newSender is a remote write client built on client_golang's remote API, as
// a user's exporter would be, pointed at the receiver behind a real HTTP
// server.
func newSender(t testing.TB, f *fixture) *remote.API {
	t.Helper()
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)
	api, err := remote.NewAPI(srv.URL,
		remote.WithAPIHTTPClient(srv.Client()),
		remote.WithAPIPath("api/v1/write"),
		remote.WithAPINoRetryOnRateLimit(),
		// A refusal here is a test failure: fail at once rather than back off.
		remote.WithAPIBackoff(remote.BackoffConfig{Min: time.Millisecond, Max: time.Millisecond, MaxRetries: 1}))
	if err != nil {
		t.Fatal(err)
	}
	return api
}

// The written counts a 2.0 sender sees are what was accepted: handed on or
// of no interest, without the series over a limit.
func TestSenderV2(t *testing.T) {
	f := newFixture(t, remotewrite.Config{
		Filter: sources.FilterFunc(func(m string) bool { return m == "http_requests_total" || m == "rt" }),
	})
	api := newSender(t, f)
	req := v2Request(
		series{labels: lbls("__name__", "http_requests_total", "job", "checkout", "code", "200"), typ: "counter",
			created: 50_000, samples: []pt{{60_000, 100}, {70_000, 130}}, exemplars: 2},
		series{labels: lbls("__name__", "rt", "job", "checkout"), typ: "histogram", created: 50_000, hists: []*writev2.Histogram{
			intHistogram(60_000, 2, 3, 0, 1.5, []*writev2.BucketSpan{span(3, 2)}, []int64{1, 1}, nil, nil),
		}, exemplars: 1},
		series{labels: lbls("__name__", "go_goroutines", "job", "checkout"), typ: "gauge", samples: []pt{{60_000, 12}}},
		series{labels: manyLabels("http_requests_total", 70), typ: "counter", samples: []pt{{60_000, 1}}, exemplars: 1},
	)
	stats, err := api.Write(context.Background(), remote.WriteV2MessageType, req)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Samples != 3 || stats.Histograms != 1 || stats.Exemplars != 3 {
		t.Errorf("written = %d samples, %d histograms, %d exemplars; want 3, 1, 3", stats.Samples, stats.Histograms, stats.Exemplars)
	}
	want := []string{
		`counter http_requests_total{code="200",job="checkout"} @60000 = 100`,
		`counter http_requests_total{code="200",job="checkout"} @70000 = 30`,
		`histogram rt{job="checkout"} @60000 count=3 sum=1.5 native=scale:2 zt:0.001 zc:0 pos:2[1 2] neg:0[]`,
	}
	if got := f.rec.got(); !equal(got, want) {
		t.Errorf("appended:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// A refusal reaches the sender with its message, and is not retried.
	bad := &writev2.Request{Symbols: []string{""}, Timeseries: []*writev2.TimeSeries{{LabelsRefs: []uint32{0, 1}}}}
	_, err = api.Write(context.Background(), remote.WriteV2MessageType, bad)
	if want := "server returned HTTP status 400 Bad Request: decode remote write 2.0 request: timeseries[0].labels_refs: symbol reference 1 out of range: the request has 1 symbols"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error = %v, want it to contain %q", err, want)
	}
	if got := f.counter("rollguard_remotewrite_requests_total", "protocol", "2.0", "code", "400"); got != 1 {
		t.Errorf("requests{code=400} = %v, want 1 (no retry)", got)
	}
}

func TestSenderV1(t *testing.T) {
	f := newFixture(t, remotewrite.Config{})
	api := newSender(t, f)
	for _, ts := range []int64{60_000, 70_000} {
		req := v1Request(
			series{labels: lbls("__name__", "http_requests_total", "job", "checkout", "code", "500"), typ: "counter",
				samples: []pt{{ts, float64(ts / 1000)}}},
			series{labels: lbls("__name__", "rt", "job", "checkout"), typ: "histogram", hists: []*writev2.Histogram{
				floatHistogram(ts, 0, float64(ts/10_000), 0, 1, []*writev2.BucketSpan{span(1, 1)}, []float64{float64(ts / 10_000)}),
			}},
		)
		stats, err := api.Write(context.Background(), remote.WriteV1MessageType, req)
		if err != nil {
			t.Fatal(err)
		}
		if stats != (remote.WriteResponseStats{}) {
			t.Errorf("1.0 write reported stats %+v: a 1.0 receiver sends none", stats)
		}
	}
	want := []string{
		`counter http_requests_total{code="500",job="checkout"} @70000 = 10`,
		`histogram rt{job="checkout"} @70000 count=1 sum=0 native=scale:0 zt:0 zc:0 pos:0[1] neg:0[]`,
	}
	if got := f.rec.got(); !equal(got, want) {
		t.Errorf("appended:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
