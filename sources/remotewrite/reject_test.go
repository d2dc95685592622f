package remotewrite_test

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/snappy"
	writev2 "github.com/prometheus/client_golang/exp/api/remote/genproto/v2"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rollguard/rollguard/sources"
	"github.com/rollguard/rollguard/sources/remotewrite"
)

const (
	msg415ContentType = `: use application/x-protobuf (remote write 1.0) or application/x-protobuf;proto=io.prometheus.write.v2.Request (remote write 2.0)`
	msgCorrupt        = `decode snappy body: corrupt input: the body must be snappy block format (not framed, not gzip)`
)

// Every way a request can be refused: the status, the exact message, and
// (for 2.0) the written headers, which say nothing was written.
func TestReject(t *testing.T) {
	valid := series{labels: lbls("__name__", "up"), typ: "gauge", samples: []pt{{1000, 1}}}
	v1 := marshal(t, v1Request(valid))
	v2 := func(req *writev2.Request) []byte { return marshal(t, req) }
	cases := []struct {
		name      string
		cfg       remotewrite.Config
		method    string
		ct, enc   string
		body      []byte
		code      int
		msg       string
		v2Headers bool
		chunked   bool // no Content-Length
	}{
		{name: "GET", method: http.MethodGet, ct: ctV1, enc: "snappy", body: snappy.Encode(nil, v1),
			code: 405, msg: "method GET not allowed: remote write is POST /api/v1/write"},
		{name: "JSON", ct: "application/json", enc: "snappy", body: snappy.Encode(nil, v1),
			code: 415, msg: `unsupported content type "application/json"` + msg415ContentType},
		{name: "malformed content type", ct: "application/x-protobuf;proto", enc: "snappy", body: snappy.Encode(nil, v1),
			code: 415, msg: `unsupported content type "application/x-protobuf;proto"` + msg415ContentType},
		{name: "unknown message", ct: "application/x-protobuf;proto=io.prometheus.write.v3.Request", enc: "snappy", body: snappy.Encode(nil, v1),
			code: 415, msg: `unsupported remote write message "io.prometheus.write.v3.Request": this receiver accepts proto=prometheus.WriteRequest and proto=io.prometheus.write.v2.Request`},
		{name: "gzip", ct: ctV2, enc: "gzip", body: snappy.Encode(nil, v1), v2Headers: true,
			code: 415, msg: `unsupported content encoding "gzip": remote write bodies are snappy-compressed (block format), Content-Encoding: snappy`},
		{name: "not snappy", ct: ctV1, enc: "snappy", body: v1, code: 400, msg: msgCorrupt},
		{name: "empty body", ct: ctV1, enc: "snappy", body: nil, code: 400, msg: msgCorrupt},
		{name: "snappy framing format", ct: ctV1, enc: "snappy", body: framed(t, v1), code: 400, msg: msgCorrupt},
		{name: "1.0 truncated", ct: ctV1, enc: "snappy", body: snappy.Encode(nil, v1[:len(v1)-1]),
			code: 400, msg: "decode remote write 1.0 request: write request: unexpected EOF"},
		{name: "1.0 wrong wire type", ct: ctV1, enc: "snappy", body: snappy.Encode(nil, []byte{0x08, 0x01}),
			code: 400, msg: "decode remote write 1.0 request: timeseries (field 1) has wire type 0, want 2"},
		{name: "1.0 sample value not a double", ct: ctV1, enc: "snappy",
			body: snappy.Encode(nil, []byte{0x0a, 0x04, 0x12, 0x02, 0x08, 0x01}),
			code: 400, msg: "decode remote write 1.0 request: timeseries[0]: samples[0]: value (field 1) has wire type 0, want 1"},
		{name: "1.0 histogram garbage", ct: ctV1, enc: "snappy",
			body: snappy.Encode(nil, []byte{0x0a, 0x03, 0x22, 0x01, 0xff}),
			code: 400, msg: "decode remote write 1.0 request: timeseries[0]: histograms[0]: unexpected EOF"},
		{name: "2.0 truncated", ct: ctV2, enc: "snappy", body: snappy.Encode(nil, v2(v2Request(valid))[:5]), v2Headers: true,
			code: 400, msg: "decode remote write 2.0 request: unexpected EOF"},
		{name: "2.0 odd label references", ct: ctV2, enc: "snappy", v2Headers: true,
			body: snappy.Encode(nil, v2(&writev2.Request{Symbols: []string{"", "__name__", "up"},
				Timeseries: []*writev2.TimeSeries{{LabelsRefs: []uint32{1, 2, 1}}}})),
			code: 400, msg: "decode remote write 2.0 request: timeseries[0].labels_refs: odd number of references (3): labels are name and value pairs"},
		{name: "2.0 symbol reference out of range", ct: ctV2, enc: "snappy", v2Headers: true,
			body: snappy.Encode(nil, v2(&writev2.Request{Symbols: []string{"", "__name__", "up"},
				Timeseries: []*writev2.TimeSeries{{LabelsRefs: []uint32{1, 2}}, {LabelsRefs: []uint32{1, 3}}}})),
			code: 400, msg: "decode remote write 2.0 request: timeseries[1].labels_refs: symbol reference 3 out of range: the request has 3 symbols"},
		{name: "2.0 metadata reference out of range", ct: ctV2, enc: "snappy", v2Headers: true,
			body: snappy.Encode(nil, v2(&writev2.Request{Symbols: []string{"", "__name__", "up"},
				Timeseries: []*writev2.TimeSeries{{LabelsRefs: []uint32{1, 2}, Metadata: &writev2.Metadata{HelpRef: 7}}}})),
			code: 400, msg: "decode remote write 2.0 request: timeseries[0].metadata: help_ref 7 or unit_ref 0 out of range: the request has 3 symbols"},
		{name: "2.0 exemplar reference out of range", ct: ctV2, enc: "snappy", v2Headers: true,
			body: snappy.Encode(nil, v2(&writev2.Request{Symbols: []string{"", "__name__", "up"},
				Timeseries: []*writev2.TimeSeries{{LabelsRefs: []uint32{1, 2}, Exemplars: []*writev2.Exemplar{{LabelsRefs: []uint32{4, 1}}}}}})),
			code: 400, msg: "decode remote write 2.0 request: timeseries[0].exemplars[0].labels_refs: symbol reference 4 out of range: the request has 3 symbols"},
		{name: "compressed body over the limit", cfg: remotewrite.Config{MaxRequestBytes: 16}, ct: ctV2, enc: "snappy", v2Headers: true,
			body: snappy.Encode(nil, v2(v2Request(valid))), code: 413, msg: "request body of 50 bytes is larger than the limit of 16 bytes"},
		{name: "compressed body over the limit, length unknown", cfg: remotewrite.Config{MaxRequestBytes: 16}, ct: ctV2, enc: "snappy", v2Headers: true,
			body: snappy.Encode(nil, v2(v2Request(valid))), chunked: true, code: 413, msg: "request body larger than the limit of 16 bytes"},
		{name: "decoded body over the limit", cfg: remotewrite.Config{MaxDecodedBytes: 1000}, ct: ctV1, enc: "snappy",
			body: snappy.Encode(nil, make([]byte, 1001)), code: 413, msg: "snappy body decodes to 1001 bytes, more than the limit of 1000 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.cfg)
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			req := httptest.NewRequest(method, "/api/v1/write", bytes.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.ct)
			req.Header.Set("Content-Encoding", tc.enc)
			if tc.chunked {
				req.ContentLength = -1
			}
			w := httptest.NewRecorder()
			f.h.ServeHTTP(w, req)
			if got := strings.TrimSuffix(w.Body.String(), "\n"); w.Code != tc.code || got != tc.msg {
				t.Errorf("got %d %q\nwant %d %q", w.Code, got, tc.code, tc.msg)
			}
			if ct := w.Header().Get("Content-Type"); ct != "text/plain; charset=utf-8" {
				t.Errorf("content type of the message = %q", ct)
			}
			h := w.Header()
			written := [3]string{h.Get(remotewrite.HeaderSamplesWritten), h.Get(remotewrite.HeaderHistogramsWritten), h.Get(remotewrite.HeaderExemplarsWritten)}
			want := [3]string{}
			if tc.v2Headers {
				want = [3]string{"0", "0", "0"}
			}
			if written != want {
				t.Errorf("written headers = %q, want %q", written, want)
			}
			if got := f.rec.got(); len(got) != 0 {
				t.Errorf("a refused request handed on %v", got)
			}
		})
	}
}

// framed is data in snappy's framing (stream) format, which remote write does not use.
func framed(t *testing.T, data []byte) []byte {
	var buf bytes.Buffer
	w := snappy.NewBufferedWriter(&buf)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// What senders differ on and the receiver must take: no Content-Type (1.0,
// as Prometheus' own receiver takes it), no Content-Encoding (snappy),
// case and spaces.
func TestAcceptVariants(t *testing.T) {
	valid := series{labels: lbls("__name__", "up"), typ: "gauge", samples: []pt{{1000, 1}}}
	v1 := snappy.Encode(nil, marshal(t, v1Request(valid)))
	_, _, v2 := encode(t, v2Request(valid))
	cases := []struct {
		name, ct, enc string
		body          []byte
		v2            bool
	}{
		{"no content type", "", "snappy", v1, false},
		{"explicit 1.0 message", "application/x-protobuf;proto=prometheus.WriteRequest", "snappy", v1, false},
		{"no content encoding", ctV1, "", v1, false},
		{"upper-case encoding", ctV1, "Snappy", v1, false},
		{"spaces and case in the media type", "Application/X-Protobuf; proto=io.prometheus.write.v2.Request", "snappy", v2, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, remotewrite.Config{})
			resp := f.post(tc.ct, tc.enc, tc.body)
			want := [3]string{}
			if tc.v2 {
				want = [3]string{"1", "0", "0"}
			}
			if resp.code != 204 || resp.written != want {
				t.Fatalf("%d %q written %q, want 204 written %q", resp.code, resp.body, resp.written, want)
			}
			if got := f.rec.got(); !equal(got, []string{`gauge up{} @1000 = 1`}) {
				t.Errorf("appended %v", got)
			}
		})
	}
}

// A snappy bomb: a body of a few bytes whose header claims 2 GiB. It is
// refused with 413 from the declared length, before any buffer is
// allocated for it.
func TestSnappyBomb(t *testing.T) {
	f := newFixture(t, remotewrite.Config{MaxDecodedBytes: 1 << 20})
	body := protowire.AppendVarint(nil, 2<<30)
	body = append(body, 0x00, 0x41) // a literal tag, then nothing like 2 GiB
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	resp := f.post(ctV2, "snappy", body)
	runtime.ReadMemStats(&after)
	if resp.code != 413 || resp.body != "snappy body decodes to 2147483648 bytes, more than the limit of 1048576 bytes" {
		t.Fatalf("%d %q", resp.code, resp.body)
	}
	// Far below the 1 MiB limit, let alone the 2 GiB claimed.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<10 {
		t.Errorf("refusing the bomb allocated %d bytes", alloc)
	}
}

// Label names and values must be UTF-8: a series that breaks this is
// refused (400) and counted, the rest of its request written.
func TestInvalidUTF8Label(t *testing.T) {
	good := series{labels: lbls("__name__", "up"), typ: "gauge", samples: []pt{{1000, 1}}}
	bad := series{labels: lbls("__name__", "up", "path", "\xff"), typ: "gauge", samples: []pt{{1000, 2}}}
	_, _, v1 := encode(t, v1Request(good, bad))
	_, _, v2 := encode(t, v2Request(good, bad))
	for _, tc := range []struct {
		name, ct string
		body     []byte
	}{{"1.0", ctV1, v1}, {"2.0", ctV2, v2}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, remotewrite.Config{})
			want := `1 of the request's samples refused, first up{path="\xff"} at 1000: invalid_label (a label with an empty name, or a label name or value that is not UTF-8: the specification requires non-empty UTF-8 names and UTF-8 values); the rest of the request was written`
			if resp := f.post(tc.ct, "snappy", tc.body); resp.code != 400 || resp.body != want {
				t.Fatalf("%d %s", resp.code, resp.body)
			}
			if got := f.rec.got(); !equal(got, []string{`gauge up{} @1000 = 1`}) {
				t.Errorf("appended %v", got)
			}
			if got := f.counter("rollguard_remotewrite_dropped_total", "reason", remotewrite.DropInvalidLabel); got != 1 {
				t.Errorf("dropped invalid_label = %v, want 1", got)
			}
		})
	}
}

type failingAppender struct{}

func (failingAppender) Append([]sources.Sample) error { return errors.New("detector: stopped") }

// When the Appender fails, the sender is told to retry (503), and the 2.0
// headers say nothing was written.
func TestAppenderFailure(t *testing.T) {
	f := newFixture(t, remotewrite.Config{Appender: failingAppender{}})
	resp := f.send(v2Request(series{labels: lbls("__name__", "up"), typ: "gauge", samples: []pt{{1000, 1}}}))
	if resp.code != 503 || resp.body != "append samples: detector: stopped" || resp.written != [3]string{"0", "0", "0"} {
		t.Errorf("%d %q written %q", resp.code, resp.body, resp.written)
	}
}
