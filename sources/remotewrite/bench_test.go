package remotewrite_test

import (
	"bytes"
	"net/http"
	"strconv"
	"testing"

	"github.com/rollguard/rollguard/sources"
	"github.com/rollguard/rollguard/sources/remotewrite"
)

// benchSeries is a request of 2,000 series of 8 labels, one sample each
// stamped ts (ms); every tenth is the guarded service's request counter,
// the rest are 50 other metrics of other jobs.
func benchSeries(ts int64) []series {
	ss := make([]series, 2000)
	for i := range ss {
		name, job, typ := "node_metric_"+strconv.Itoa(i%50), "node", "gauge"
		if i%10 == 0 {
			name, job, typ = "http_requests_total", "checkout", "counter"
		}
		ss[i] = series{
			labels: lbls("__name__", name, "job", job, "instance", "10.0.0."+strconv.Itoa(i%250)+":9100",
				"version", "v"+strconv.Itoa(i%2+1), "code", strconv.Itoa(200+i%5*100), "method", "GET",
				"path", "/api/v"+strconv.Itoa(i%7), "zone", "eu-west-"+strconv.Itoa(i%3)),
			typ: typ, samples: []pt{{ts, float64(i)}},
		}
	}
	return ss
}

// discardWriter is a ResponseWriter that keeps only the status.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

type countingAppender struct{ n int }

func (c *countingAppender) Append(s []sources.Sample) error { c.n += len(s); return nil }

// benchBodies is benchRounds encodings of a request, each stamped a
// second after the one before: a series takes one point per timestamp (a
// second point at the same timestamp is a duplicate and counts nothing).
const benchRounds = 64

func benchBodies(b *testing.B, msg func(ts int64) any) (ct, enc string, bodies [][]byte) {
	for r := range benchRounds {
		var body []byte
		ct, enc, body = encode(b, msg(1_700_000_000_000+int64(r)*1000))
		bodies = append(bodies, body)
	}
	return ct, enc, bodies
}

// benchmarkWrite posts pre-encoded requests b.N times, through the handler
// but without a network. The first of benchRounds rounds sets the
// counters' bases (untimed, with a fresh receiver); every later one hands on
// 200 increments; no detector is behind the Appender. samples/s counts the
// samples posted, wanted or not.
func benchmarkWrite(b *testing.B, msg func(ts int64) any) {
	ct, enc, bodies := benchBodies(b, msg)
	app := &countingAppender{}
	var h http.Handler
	w := &discardWriter{h: http.Header{}}
	req, err := http.NewRequest(http.MethodPost, "/api/v1/write", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Content-Encoding", enc)
	rd := bytes.NewReader(nil)
	post := func(body []byte) {
		rd.Reset(body)
		req.Body, req.ContentLength = readCloser{rd}, int64(len(body))
		clear(w.h)
		h.ServeHTTP(w, req)
		if w.code != http.StatusNoContent {
			b.Fatalf("status %d", w.code)
		}
	}
	fresh := func() {
		h = remotewrite.NewReceiver(remotewrite.Config{
			Appender: app,
			Filter:   sources.FilterFunc(func(m string) bool { return m == "http_requests_total" }),
			// As the daemon sets them: the per-version budget is on.
			VersionLabels: []string{"job", "version"},
		}).Handler()
		post(bodies[0]) // sets the counters' bases
	}
	fresh()
	app.n = 0
	b.SetBytes(int64(len(bodies[0])))
	b.ReportAllocs()
	b.ResetTimer()
	for i, r := 0, 1; i < b.N; i, r = i+1, r+1 {
		if r == benchRounds {
			b.StopTimer()
			n := app.n
			fresh()
			app.n, r = n, 1
			b.StartTimer()
		}
		post(bodies[r])
	}
	b.StopTimer()
	if app.n != 200*b.N {
		b.Fatalf("handed on %d samples in %d posts, want 200 a post", app.n, b.N)
	}
	b.ReportMetric(float64(2000*b.N)/b.Elapsed().Seconds(), "samples/s")
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

func BenchmarkRemoteWriteV1(b *testing.B) {
	benchmarkWrite(b, func(ts int64) any { return v1Request(benchSeries(ts)...) })
}

func BenchmarkRemoteWriteV2(b *testing.B) {
	benchmarkWrite(b, func(ts int64) any { return v2Request(benchSeries(ts)...) })
}
