package otlp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/internal/poll"
	"github.com/rollguard/rollguard/sources"
	"github.com/rollguard/rollguard/sources/otlp"
	"github.com/rollguard/rollguard/web"
)

// grpcReceiver runs a Receiver behind a real gRPC server on loopback.
type grpcReceiver struct {
	sink *sampleSink
	reg  *prometheus.Registry
	addr string
	// reads counts the request messages the server read off the wire
	// (stats.InPayload): none means nothing was decoded either.
	reads atomic.Int64
}

type payloadCounter struct{ n *atomic.Int64 }

func (p payloadCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (p payloadCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (p payloadCounter) HandleConn(context.Context, stats.ConnStats) {}
func (p payloadCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.InPayload); ok {
		p.n.Add(1)
	}
}

func startGRPCReceiver(t *testing.T, cfg otlp.Config, auth otlp.Authorizer) *grpcReceiver {
	t.Helper()
	gr := &grpcReceiver{sink: &sampleSink{}, reg: prometheus.NewRegistry()}
	cfg.Appender, cfg.Registerer = gr.sink, gr.reg
	r := otlp.NewReceiver(cfg)
	srv := grpc.NewServer(append(r.GRPCServerOptions(auth), grpc.StatsHandler(payloadCounter{&gr.reads}))...)
	r.RegisterGRPC(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	gr.addr = ln.Addr().String()
	return gr
}

// client is pdata's own OTLP/gRPC client, for requests the SDK would not
// build (too many points, hand-made histograms).
func (gr *grpcReceiver) client(t *testing.T) pmetricotlp.GRPCClient {
	t.Helper()
	cc, err := grpc.NewClient(gr.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return pmetricotlp.NewGRPCClient(cc)
}

// sdkExport records one histogram point through the OpenTelemetry SDK
// and exports it over OTLP/gRPC with the given headers, once.
func sdkExport(t *testing.T, addr string, headers map[string]string) error {
	t.Helper()
	exp, err := otlpmetricgrpc.New(context.Background(), otlpmetricgrpc.WithEndpoint(addr), otlpmetricgrpc.WithInsecure(),
		otlpmetricgrpc.WithHeaders(headers), otlpmetricgrpc.WithRetry(otlpmetricgrpc.RetryConfig{Enabled: false}))
	if err != nil {
		t.Fatal(err)
	}
	res := resource.NewSchemaless(attribute.String("service.name", "checkout"), attribute.String("service.version", "v1"))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res),
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))))
	h, err := mp.Meter("checkout").Float64Histogram(reqDur)
	if err != nil {
		t.Fatal(err)
	}
	h.Record(context.Background(), 0.1)
	return mp.Shutdown(context.Background()) // exports once, the last time

}

// TestGRPCAuthBeforeDecoding: with a token set, an export without it is
// refused Unauthenticated before its message is read (the server reads no
// payload, decodes nothing, appends nothing), and an export with it is
// taken.
func TestGRPCAuthBeforeDecoding(t *testing.T) {
	auth, err := web.NewAuthenticator(configs.ServerConfig{Authorization: &commoncfg.Authorization{Type: "Bearer", Credentials: "s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	gr := startGRPCReceiver(t, otlp.Config{}, auth)

	for _, headers := range []map[string]string{nil, {"Authorization": "Bearer guess"}} {
		err := sdkExport(t, gr.addr, headers)
		if status.Code(errors.Unwrap(err)) != codes.Unauthenticated && !strings.Contains(fmt.Sprint(err), "Unauthenticated") {
			t.Fatalf("export with headers %v: %v, want Unauthenticated", headers, err)
		}
	}
	if n := gr.reads.Load(); n != 0 {
		t.Errorf("the server read %d request messages of unauthenticated calls, want 0", n)
	}
	if got := gr.sink.take(); len(got) != 0 {
		t.Errorf("unauthenticated exports appended %d samples", len(got))
	}
	if got, want := counters(t, gr.reg, "rollguard_otlp_requests_total"), map[string]float64{`code="401"`: 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("rollguard_otlp_requests_total = %v, want %v", got, want)
	}

	// The healthy twin: the same export with the token.
	if err := sdkExport(t, gr.addr, map[string]string{"Authorization": "Bearer s3cret"}); err != nil {
		t.Fatalf("authenticated export: %v", err)
	}
	if got := gr.sink.take(); len(got) != 1 || got[0].Metric != reqDur || got[0].Count != 1 {
		t.Errorf("authenticated export appended %+v, want the one histogram point", got)
	}
	if n := gr.reads.Load(); n != 1 {
		t.Errorf("the server read %d request messages, want 1", n)
	}
}

// deepJSON is an OTLP/JSON export whose one gauge point carries an
// attribute of arrays nested levels deep: valid OTLP that pdata decodes,
// so a refusal can only come from the depth check.
func deepJSON(levels int) []byte {
	value := `{"stringValue":"x"}`
	for i := 0; i < levels; i++ {
		value = `{"arrayValue":{"values":[` + value + `]}}`
	}
	return []byte(`{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}},` +
		`{"key":"service.version","value":{"stringValue":"v1"}}]},"scopeMetrics":[{"metrics":[{"name":"cpu","gauge":{"dataPoints":[` +
		`{"timeUnixNano":"` + fmt.Sprint(httpT0.UnixNano()) + `","asDouble":0.5,"attributes":[{"key":"deep","value":` + value + `}]}]}}]}]}]}`)
}

// TestReceiverJSONDepth: an OTLP/JSON body nested deeper than MaxJSONDepth
// is refused with 400 and a message naming the limit before it is decoded;
// the same document within the limit is taken (the twin), and a
// 560,000-level gzip bomb of brackets is refused the same way.
func TestReceiverJSONDepth(t *testing.T) {
	// Each level of arrayValue costs three brackets ({, { and [).
	doc := deepJSON(30)
	rs := startReceiver(t, otlp.Config{MaxJSONDepth: 64})
	r := rs.post(t, http.MethodPost, ctJSON, "", doc)
	if r.code != http.StatusBadRequest {
		t.Fatalf("status %d, want 400; body %q", r.code, r.body)
	}
	if msg := rpcStatus(t, r).GetMessage(); !strings.HasPrefix(msg, "decode OTLP metrics: JSON nested deeper than 64 levels at byte ") ||
		!strings.HasSuffix(msg, "(limits.max_json_depth)") {
		t.Errorf("message %q, want one naming the depth limit", msg)
	}
	if got := rs.sink.take(); len(got) != 0 {
		t.Errorf("refused request appended %d samples", len(got))
	}

	bomb := gzipped(t, []byte(strings.Repeat("[", 560_000)+strings.Repeat("]", 560_000)))
	r = rs.post(t, http.MethodPost, ctJSON, "gzip", bomb)
	if r.code != http.StatusBadRequest || !strings.Contains(rpcStatus(t, r).GetMessage(), "JSON nested deeper than 64 levels at byte 64 ") {
		t.Errorf("560,000 levels: status %d, body %q; want 400 naming the depth limit", r.code, r.body)
	}

	// The healthy twin: deep enough for the document, it is decoded and taken.
	rs = startReceiver(t, otlp.Config{MaxJSONDepth: 128})
	exportOK(t, rs.post(t, http.MethodPost, ctJSON, "", doc), true)
	if got := rs.sink.take(); len(got) != 1 || got[0].Metric != "cpu" {
		t.Errorf("samples %+v, want the cpu point", got)
	}
}

// manyGauges is an export of n gauge points of one metric.
func manyGauges(n int) *metricsBuilder {
	b := newMetrics("v1")
	m := b.scope.AppendEmpty()
	m.SetName("cpu")
	dps := m.SetEmptyGauge().DataPoints()
	for i := 0; i < n; i++ {
		dp := dps.AppendEmpty()
		dp.Attributes().PutInt("core", int64(i))
		dp.SetTimestamp(pcommonTime(httpT0))
		dp.SetDoubleValue(0.5)
	}
	return b
}

// TestReceiverPointsPerRequest: a request with more data points than
// MaxPoints is refused whole, none of its points kept: 413 over HTTP,
// InvalidArgument over gRPC (OTLP's "do not retry": the same request can
// never succeed), each with a message saying what to do. A request at the
// limit is taken.
func TestReceiverPointsPerRequest(t *testing.T) {
	const limit = 3
	over, at := manyGauges(limit+1), manyGauges(limit)
	wantMsg := "request carries 4 data points, more than the 3 allowed (limits.max_points_per_request): send smaller batches"

	rs := startReceiver(t, otlp.Config{MaxPoints: limit})
	for _, asJSON := range []bool{false, true} {
		var r httpResult
		if asJSON {
			r = rs.post(t, http.MethodPost, ctJSON, "", over.json(t))
		} else {
			r = rs.post(t, http.MethodPost, ctProto, "", over.proto(t))
		}
		if r.code != http.StatusRequestEntityTooLarge {
			t.Fatalf("json=%v: status %d, want 413; body %q", asJSON, r.code, r.body)
		}
		if st := rpcStatus(t, r); st.GetMessage() != wantMsg || st.GetCode() != int32(codes.InvalidArgument) {
			t.Errorf("json=%v: status (%d, %q), want (%d, %q)", asJSON, st.GetCode(), st.GetMessage(), codes.InvalidArgument, wantMsg)
		}
		if got := rs.sink.take(); len(got) != 0 {
			t.Errorf("json=%v: refused request appended %d samples", asJSON, len(got))
		}
	}
	exportOK(t, rs.post(t, http.MethodPost, ctProto, "", at.proto(t)), false)
	if got := len(rs.sink.take()); got != limit {
		t.Errorf("request at the limit appended %d samples, want %d", got, limit)
	}

	gr := startGRPCReceiver(t, otlp.Config{MaxPoints: limit}, nil)
	c := gr.client(t)
	_, err := c.Export(context.Background(), pmetricotlp.NewExportRequestFromMetrics(over.md))
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != wantMsg {
		t.Errorf("gRPC: %v, want InvalidArgument %q", err, wantMsg)
	}
	if got := gr.sink.take(); len(got) != 0 {
		t.Errorf("gRPC: refused request appended %d samples", len(got))
	}
	if _, err := c.Export(context.Background(), pmetricotlp.NewExportRequestFromMetrics(at.md)); err != nil {
		t.Fatalf("gRPC, at the limit: %v", err)
	}
	if got := len(gr.sink.take()); got != limit {
		t.Errorf("gRPC: request at the limit appended %d samples, want %d", got, limit)
	}
	if got, want := counters(t, gr.reg, "rollguard_otlp_requests_total"), map[string]float64{`code="413"`: 1, `code="200"`: 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("rollguard_otlp_requests_total = %v, want %v", got, want)
	}
}

// TestReceiverTooManyBuckets: histogram points with more buckets than
// MaxBuckets (+Inf and zero buckets included) are rejected one by one (partial success, reason
// too_many_buckets) before the cumulative state sees them; points at the
// limit in the same request are taken.
func TestReceiverTooManyBuckets(t *testing.T) {
	cum := pmetric.AggregationTemporalityCumulative
	fourBounds := []float64{0.1, 0.2, 0.5, 1}
	body := newMetrics("v1").
		// 4 bounds, 5 buckets: over a limit of 4.
		histogram(reqDur, cum, 500, httpStart, httpT0, 5, 1, fourBounds, []uint64{1, 1, 1, 1, 1}).
		// 5 bounds and no bucket counts: 6 buckets, over.
		histogram(reqDur, cum, 501, httpStart, httpT0, 5, 1, append(fourBounds, 2), nil).
		// 3 bounds, 4 buckets: at the limit.
		histogram(reqDur, cum, 200, httpStart, httpT0, 4, 1, []float64{0.1, 0.5, 1}, []uint64{1, 1, 1, 1}).
		// Exponential: 2 positive buckets and the zero bucket.
		expHistogram("rpc.latency", httpStart, httpT0, 0, 1)
	eh := body.scope.At(body.scope.Len() - 1).ExponentialHistogram()
	eh.DataPoints().At(0).Negative().BucketCounts().FromRaw([]uint64{0}) // 4 buckets: at the limit
	over := eh.DataPoints().AppendEmpty()
	eh.DataPoints().At(0).CopyTo(over)
	over.Negative().BucketCounts().FromRaw([]uint64{0, 0}) // 5 buckets: over
	over.SetTimestamp(pcommonTime(httpT0.Add(time.Second)))

	rs := startReceiver(t, otlp.Config{MaxBuckets: 4})
	ps := exportOK(t, rs.post(t, http.MethodPost, ctProto, "", body.proto(t)), false).PartialSuccess()
	if ps.RejectedDataPoints() != 3 || ps.ErrorMessage() != "too_many_buckets" {
		t.Errorf("partial success (%d, %q), want (3, too_many_buckets)", ps.RejectedDataPoints(), ps.ErrorMessage())
	}
	got := rs.sink.take()
	if len(got) != 2 || got[0].Metric != reqDur || len(got[0].Buckets) != 4 || got[1].Metric != "rpc.latency" {
		t.Errorf("samples %+v, want the 4-bucket histogram and the exponential one at the limit", got)
	}
	if got, want := counters(t, rs.reg, "rollguard_otlp_points_dropped_total"), map[string]float64{`reason="too_many_buckets"`: 3}; !reflect.DeepEqual(got, want) {
		t.Errorf("rollguard_otlp_points_dropped_total = %v, want %v", got, want)
	}

	// The rejected series left no cumulative state: the same series within
	// the limit later is new, and its first point counts in full.
	t1 := httpT0.Add(10 * time.Second)
	exportOK(t, rs.post(t, http.MethodPost, ctProto, "", newMetrics("v1").
		histogram(reqDur, cum, 500, httpStart, t1, 7, 2, []float64{0.1, 1}, []uint64{3, 2, 2}).proto(t)), false)
	if got := rs.sink.take(); len(got) != 1 || got[0].Count != 7 {
		t.Errorf("samples %+v, want the whole first point (count 7) of a series never tracked", got)
	}
}

// TestReceiverDecodeSlots: with every decode slot taken, an OTLP export
// waits; one whose client gives up first is refused (HTTP 503 with
// Retry-After, gRPC Unavailable) and counted, having decoded nothing. Once
// the slot is free the same exports go through.
func TestReceiverDecodeSlots(t *testing.T) {
	reg := prometheus.NewRegistry()
	limiter := sources.NewDecodeLimiter(1, reg)
	sink := &sampleSink{}
	r := otlp.NewReceiver(otlp.Config{Appender: sink, Decodes: limiter, Registerer: prometheus.NewRegistry()})
	srv := grpc.NewServer(r.GRPCServerOptions(nil)...)
	r.RegisterGRPC(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	gr := &grpcReceiver{addr: ln.Addr().String()}
	client := gr.client(t)
	body := newMetrics("v1").gauge("cpu", httpT0, 0.5)

	release, err := limiter.Acquire(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	// HTTP: the client's context ends while it waits.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/metrics", bytes.NewReader(body.proto(t)))
	req.Header.Set("Content-Type", ctProto)
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, req)
	res := httpResult{rec.Code, rec.Header().Get("Content-Type"), rec.Body.Bytes()}
	if res.code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("status %d, Retry-After %q, want 503 and 1; body %q", res.code, rec.Header().Get("Retry-After"), res.body)
	}
	if st := rpcStatus(t, res); st.GetCode() != int32(codes.Unavailable) || !strings.Contains(st.GetMessage(), "decode slot") {
		t.Errorf("status (%d, %q), want Unavailable saying why", st.GetCode(), st.GetMessage())
	}
	// gRPC: the call's deadline, which the server shares, passes while it
	// waits; the client sees its own deadline or the server's Unavailable,
	// whichever comes first.
	gctx, gcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer gcancel()
	if _, err := client.Export(gctx, pmetricotlp.NewExportRequestFromMetrics(body.md)); status.Code(err) != codes.DeadlineExceeded && status.Code(err) != codes.Unavailable {
		t.Errorf("gRPC export: %v, want DeadlineExceeded or Unavailable", err)
	}
	poll.Until(t, 10*time.Second, func() error {
		got := counters(t, reg, "rollguard_decode_refused_total")
		if want := map[string]float64{`input="otlp_http"`: 1, `input="otlp_grpc"`: 1}; !reflect.DeepEqual(got, want) {
			return fmt.Errorf("rollguard_decode_refused_total = %v, want %v", got, want)
		}
		return nil
	})
	if got := sink.take(); len(got) != 0 {
		t.Fatalf("refused exports appended %d samples", len(got))
	}

	// The healthy twin: with the slot free, both exports are taken.
	release()
	if _, err := client.Export(context.Background(), pmetricotlp.NewExportRequestFromMetrics(body.md)); err != nil {
		t.Fatalf("gRPC export: %v", err)
	}
	rec = httptest.NewRecorder()
	req = httptest.NewRequest(http.MethodPost, "/v1/metrics", bytes.NewReader(body.proto(t)))
	req.Header.Set("Content-Type", ctProto)
	r.Handler().ServeHTTP(rec, req)
	exportOK(t, httpResult{rec.Code, rec.Header().Get("Content-Type"), rec.Body.Bytes()}, false)
	if got := len(sink.take()); got != 2 {
		t.Errorf("%d samples, want 2", got)
	}
}

// TestReceiverTrackerRefusals: the cumulative state's refusals reach the
// sender under their own reasons. A retried export (duplicates) is a plain
// 200, counted as dropped; a point from the year 2200 is rejected
// (too_far_ahead) and leaves its series as it was, so the next correct
// point counts in full; a version over its series budget is rejected
// (version_series_limit) while another version still gets room.
func TestReceiverTrackerRefusals(t *testing.T) {
	now := time.Now()
	start, t1, future := now.Add(-time.Minute), now.Add(-30*time.Second), time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
	cum := pmetric.AggregationTemporalityCumulative
	rs := startReceiver(t, otlp.Config{MaxTimestampAhead: 10 * time.Minute, MaxSeries: 100, MaxSeriesPerVersion: 2,
		VersionLabels: []string{"service.name", "service.version"}})
	send := func(m *metricsBuilder) (int64, string, []sources.Sample) {
		t.Helper()
		ps := exportOK(t, rs.post(t, http.MethodPost, ctProto, "", m.proto(t)), false).PartialSuccess()
		return ps.RejectedDataPoints(), ps.ErrorMessage(), rs.sink.take()
	}

	first := newMetrics("v1").sum("requests", cum, true, start, t1, 7)
	if n, why, got := send(first); n != 0 || len(got) != 1 || got[0].Value != 7 {
		t.Fatalf("first export: rejected (%d, %q), samples %+v", n, why, got)
	}
	if n, why, got := send(first); n != 0 || why != "" || len(got) != 0 {
		t.Errorf("retried export: rejected (%d, %q), samples %+v; want a plain 200 that adds nothing", n, why, got)
	}

	if n, why, got := send(newMetrics("v1").sum("requests", cum, true, start, future, 1e9).gauge("cpu", future, 1)); n != 2 || why != "too_far_ahead" || len(got) != 0 {
		t.Errorf("year-2200 points: rejected (%d, %q), samples %+v; want both rejected as too_far_ahead", n, why, got)
	}
	if n, why, got := send(newMetrics("v1").sum("requests", cum, true, start, now, 10)); n != 0 || len(got) != 1 || got[0].Value != 3 {
		t.Errorf("the next correct point: rejected (%d, %q), samples %+v; want an increment of 3", n, why, got)
	}

	flood := newMetrics("v1")
	for i := 0; i < 3; i++ {
		flood.sum(fmt.Sprintf("junk_%d", i), cum, true, start, now, 1)
	}
	if n, why, got := send(flood); n != 2 || why != "version_series_limit" || len(got) != 1 {
		t.Errorf("v1 flood: rejected (%d, %q), %d samples; want 2 rejected as version_series_limit (requests and junk_0 hold its budget)", n, why, len(got))
	}
	if n, why, got := send(newMetrics("v2").sum("requests", cum, true, start, now, 5)); n != 0 || len(got) != 1 {
		t.Errorf("v2 after the v1 flood: rejected (%d, %q), %d samples; want its series taken", n, why, len(got))
	}
	want := map[string]float64{`reason="duplicate"`: 1, `reason="too_far_ahead"`: 2, `reason="version_series_limit"`: 2}
	if got := counters(t, rs.reg, "rollguard_otlp_points_dropped_total"); !reflect.DeepEqual(got, want) {
		t.Errorf("rollguard_otlp_points_dropped_total = %v, want %v", got, want)
	}
}
