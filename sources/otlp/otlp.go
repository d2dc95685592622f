// Package otlp receives OpenTelemetry metrics over OTLP/HTTP (protobuf and
// JSON, optionally gzip) through the collector's pdata types, normalises them
// and hands the samples to a sources.Appender.
package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	spb "google.golang.org/genproto/googleapis/rpc/status"

	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // OTLP/gRPC exporters may compress with gzip
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/rollguard/rollguard/sources"
)

const (
	contentProto = "application/x-protobuf"
	contentJSON  = "application/json"
)

// Config is what a Receiver is built from.
type Config struct {
	Appender sources.Appender
	Filter   sources.Filter
	// MaxRequestBytes bounds the body, before and after decompression.
	MaxRequestBytes int64
	// MaxSeries bounds the cumulative-to-delta state.
	MaxSeries int
	// MaxSeriesPerVersion bounds the series one service version holds of
	// MaxSeries (version_series_limit); a version is the values of
	// VersionLabels a point carries. Zero: no bound but MaxSeries.
	MaxSeriesPerVersion int
	VersionLabels       []string
	// MaxTimestampAhead: a point stamped further after its arrival is
	// rejected (too_far_ahead) and changes no state. Zero: no bound.
	MaxTimestampAhead time.Duration
	// MaxLabels and MaxLabelValueLength bound one data point's attributes
	// (resource and point together); a point over either is rejected and counted.
	MaxLabels           int
	MaxLabelValueLength int
	// MaxPoints: a request with more data points is refused whole (413,
	// gRPC InvalidArgument) before any of them is kept.
	MaxPoints int
	// MaxBuckets: a histogram point with more buckets than this is rejected
	// (reason too_many_buckets) before it reaches any state. Buckets are
	// counted as Prometheus counts them: a classic histogram's +Inf bucket
	// and an exponential histogram's zero bucket included.
	MaxBuckets int
	// MaxJSONDepth: an OTLP/JSON body whose objects and arrays nest deeper
	// is refused (400) before it is decoded.
	MaxJSONDepth int
	// Decodes bounds the requests decoded at once; it may be shared with
	// other inputs. Nil: no bound.
	Decodes    *sources.DecodeLimiter
	Logger     hclog.Logger
	Registerer prometheus.Registerer
}

// Receiver is the OTLP metrics endpoint: HTTP (POST /v1/metrics, Handler)
// and gRPC (MetricsService/Export, RegisterGRPC).
type Receiver struct {
	cfg     Config
	cum     *sources.Cumulative
	metrics *metrics
	log     hclog.Logger
	// wholeOnly: every protobuf export is decoded whole by pdata, the
	// reference the streaming decoder is tested against.
	wholeOnly bool
}

type metrics struct {
	requests *prometheus.CounterVec
	samples  prometheus.Counter
	dropped  *prometheus.CounterVec
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollguard_otlp_requests_total",
			Help: "OTLP export requests received over HTTP and gRPC, by HTTP-equivalent response code.",
		}, []string{"code"}),
		samples: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rollguard_otlp_samples_accepted_total",
			Help: "Samples accepted from OTLP and handed on.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollguard_otlp_points_dropped_total",
			Help: "OTLP data points not handed on, by reason.",
		}, []string{"reason"}),
	}
	if r != nil {
		r.MustRegister(m.requests, m.samples, m.dropped)
	}
	return m
}

// NewReceiver builds a receiver. A nil Filter accepts every metric.
func NewReceiver(cfg Config) *Receiver {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Filter == nil {
		cfg.Filter = sources.FilterFunc(func(string) bool { return true })
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = 16 << 20
	}
	if cfg.MaxSeries <= 0 {
		cfg.MaxSeries = 100_000
	}
	if cfg.MaxLabels <= 0 {
		cfg.MaxLabels = 64
	}
	if cfg.MaxLabelValueLength <= 0 {
		cfg.MaxLabelValueLength = 2048
	}
	if cfg.MaxPoints <= 0 {
		cfg.MaxPoints = 500_000
	}
	if cfg.MaxBuckets <= 0 {
		cfg.MaxBuckets = 2048
	}
	if cfg.MaxJSONDepth <= 0 {
		cfg.MaxJSONDepth = 64
	}
	return &Receiver{
		cfg: cfg,
		cum: sources.NewCumulative(cfg.MaxSeries, 15*time.Minute,
			sources.MaxAhead(cfg.MaxTimestampAhead), sources.MaxSeriesPerCohort(cfg.MaxSeriesPerVersion)),
		metrics: newMetrics(cfg.Registerer),
		log:     cfg.Logger,
	}
}

// Handler serves POST /v1/metrics.
func (r *Receiver) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/metrics", r.serveMetrics)
	return mux
}

type httpError struct {
	code int
	msg  string
	// retryAfter, when set, is sent as Retry-After (a refusal for load).
	retryAfter string
}

func (e *httpError) Error() string { return e.msg }

func (r *Receiver) serveMetrics(w http.ResponseWriter, req *http.Request) {
	ct := contentProto
	if mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err == nil && mt == contentJSON {
		ct = contentJSON
	}
	resp, err := r.export(req, ct)
	if err != nil {
		var he *httpError
		if !errors.As(err, &he) {
			he = &httpError{code: http.StatusInternalServerError, msg: err.Error()}
		}
		r.metrics.requests.WithLabelValues(strconv.Itoa(he.code)).Inc()
		if he.code == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", http.MethodPost)
		}
		if he.retryAfter != "" {
			w.Header().Set("Retry-After", he.retryAfter)
		}
		writeStatus(w, ct, he.code, he.msg)
		return
	}
	var body []byte
	if ct == contentJSON {
		body, err = resp.MarshalJSON()
	} else {
		body, err = resp.MarshalProto()
	}
	if err != nil {
		writeStatus(w, ct, http.StatusInternalServerError, "encode response: "+err.Error())
		return
	}
	r.metrics.requests.WithLabelValues("200").Inc()
	w.Header().Set("Content-Type", ct)
	_, _ = w.Write(body)
}

// writeStatus answers a failed export with a google.rpc.Status, as OTLP/HTTP prescribes.
func writeStatus(w http.ResponseWriter, ct string, code int, msg string) {
	st := &spb.Status{Code: grpcCode(code), Message: strings.ToValidUTF8(msg, "\uFFFD")}
	var body []byte
	if ct == contentJSON {
		body, _ = protojson.Marshal(st)
	} else {
		body, _ = proto.Marshal(st)
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

func grpcCode(httpCode int) int32 {
	switch httpCode {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		return 3 // INVALID_ARGUMENT
	case http.StatusMethodNotAllowed:
		return 12 // UNIMPLEMENTED
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		return 14 // UNAVAILABLE
	}
	return 13 // INTERNAL
}

func (r *Receiver) export(req *http.Request, ct string) (pmetricotlp.ExportResponse, error) {
	if req.Method != http.MethodPost {
		return pmetricotlp.ExportResponse{}, &httpError{code: http.StatusMethodNotAllowed, msg: "only POST is allowed on /v1/metrics"}
	}
	if mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err != nil || (mt != contentProto && mt != contentJSON) {
		return pmetricotlp.ExportResponse{}, &httpError{code: http.StatusUnsupportedMediaType,
			msg: fmt.Sprintf("unsupported content type %q: use %s or %s", req.Header.Get("Content-Type"), contentProto, contentJSON)}
	}
	gz, err := gzipped(req.Header.Get("Content-Encoding"))
	if err != nil {
		return pmetricotlp.ExportResponse{}, err
	}
	buf, err := r.readBody(req)
	if err != nil {
		return pmetricotlp.ExportResponse{}, err
	}
	defer releaseBody(buf)
	wire := *buf
	// The body is off the network; what follows costs memory and CPU, so
	// it runs in a decode slot.
	release, err := r.cfg.Decodes.Acquire(req.Context(), "otlp_http")
	if err != nil {
		return pmetricotlp.ExportResponse{}, &httpError{code: http.StatusServiceUnavailable, msg: err.Error(), retryAfter: sources.RetryAfterSeconds}
	}
	defer release()
	body := wire
	if gz {
		if body, err = r.gunzip(wire); err != nil {
			return pmetricotlp.ExportResponse{}, err
		}
	}
	var er pmetricotlp.ExportRequest
	atDoor := false
	if ct == contentJSON {
		er = pmetricotlp.NewExportRequest()
		if err := checkJSONDepth(body, r.cfg.MaxJSONDepth); err != nil {
			return pmetricotlp.ExportResponse{}, &httpError{code: http.StatusBadRequest, msg: "decode OTLP metrics: " + err.Error()}
		}
		if err := er.UnmarshalJSON(body); err != nil {
			return pmetricotlp.ExportResponse{}, &httpError{code: http.StatusBadRequest, msg: "decode OTLP metrics: " + err.Error()}
		}
	} else if er, atDoor, err = r.decodeProto(body); err != nil {
		return pmetricotlp.ExportResponse{}, err
	}
	return r.consume(er.Metrics(), atDoor)
}

// decodeProto decodes a protobuf export, cut down at the door by the
// streaming decoder (wire.go) when its walk takes the body, else whole.
// atDoor: the export was cut down, and every metric left in it is one the
// Filter wants. The error is an *httpError (400, or 413 over MaxPoints).
func (r *Receiver) decodeProto(body []byte) (er pmetricotlp.ExportRequest, atDoor bool, err error) {
	if !r.wholeOnly {
		if t, err := r.trim(body); err == nil {
			defer t.release()
			if err := r.checkPoints(t.points); err != nil {
				return pmetricotlp.ExportRequest{}, false, err
			}
			er := pmetricotlp.NewExportRequest()
			if er.UnmarshalProto(t.bytes()) == nil {
				return er, true, nil
			}
			// Not reached: what the walk takes, pdata does. Were it
			// reached, the whole body has the last word.
		}
	}
	if err := r.checkPoints(protoPoints(body)); err != nil {
		return pmetricotlp.ExportRequest{}, false, err
	}
	er = pmetricotlp.NewExportRequest()
	if err := er.UnmarshalProto(body); err != nil {
		return pmetricotlp.ExportRequest{}, false, &httpError{code: http.StatusBadRequest, msg: "decode OTLP metrics: " + err.Error()}
	}
	return er, false, nil
}

// consume converts and appends; the part shared by HTTP and gRPC. atDoor:
// the Filter has been asked about every metric of md and wants it.
func (r *Receiver) consume(md pmetric.Metrics, atDoor bool) (pmetricotlp.ExportResponse, error) {
	if err := r.checkPoints(md.DataPointCount()); err != nil {
		return pmetricotlp.ExportResponse{}, err
	}
	samples, rejected, reason := r.convert(md, atDoor)
	resp := pmetricotlp.NewExportResponse()
	if len(samples) > 0 {
		if err := r.cfg.Appender.Append(samples); err != nil {
			return pmetricotlp.ExportResponse{}, &httpError{code: http.StatusServiceUnavailable, msg: "append: " + err.Error()}
		}
		r.metrics.samples.Add(float64(len(samples)))
	}
	if rejected > 0 {
		resp.PartialSuccess().SetRejectedDataPoints(rejected)
		resp.PartialSuccess().SetErrorMessage(reason)
	}
	return resp, nil
}

// checkPoints refuses a request of n data points over MaxPoints with 413
// (gRPC InvalidArgument): it is refused whole, and retrying it cannot help.
// Protobuf requests are counted before they are decoded too (protoPoints).
func (r *Receiver) checkPoints(n int) error {
	if err := sources.CheckPointsPerRequest(n, r.cfg.MaxPoints); err != nil {
		return &httpError{code: http.StatusRequestEntityTooLarge, msg: err.Error()}
	}
	return nil
}

// Export takes one decoded export request, as the OTLP gRPC
// MetricsService does; the error is a gRPC status.
func (r *Receiver) Export(_ context.Context, req pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	resp, err := r.consume(req.Metrics(), false)
	if err != nil {
		return resp, r.grpcError(err)
	}
	r.metrics.requests.WithLabelValues("200").Inc()
	return resp, nil
}

// grpcError counts a refused gRPC call by its HTTP-equivalent code and
// turns err into the status OTLP/gRPC prescribes for it.
func (r *Receiver) grpcError(err error) error {
	var he *httpError
	if !errors.As(err, &he) {
		he = &httpError{code: http.StatusInternalServerError, msg: err.Error()}
	}
	r.metrics.requests.WithLabelValues(strconv.Itoa(he.code)).Inc()
	return status.Error(codes.Code(grpcCode(he.code)), he.msg)
}

// gzipped says whether a body in Content-Encoding enc is gzip'd.
func gzipped(enc string) (bool, error) {
	switch enc = strings.ToLower(enc); enc {
	case "", "identity":
		return false, nil
	case "gzip":
		return true, nil
	}
	return false, &httpError{code: http.StatusUnsupportedMediaType, msg: fmt.Sprintf("unsupported content encoding %q: use gzip or none", enc)}
}

// bodyBuffers hold request bodies as read, for the next request once one
// is answered: nothing decoded from a body refers to it (pdata copies).
var bodyBuffers = sync.Pool{New: func() any { return new([]byte) }}

// releaseBody returns a buffer from readBody. One grown past 1 MiB by a
// big export is left to the collector, so that idle buffers stay small.
func releaseBody(buf *[]byte) {
	if cap(*buf) <= 1<<20 {
		*buf = (*buf)[:0]
		bodyBuffers.Put(buf)
	}
}

// readBody reads the body as it came over the wire, up to MaxRequestBytes,
// into a buffer from bodyBuffers, for releaseBody once the request is
// answered.
func (r *Receiver) readBody(req *http.Request) (*[]byte, error) {
	limit := r.cfg.MaxRequestBytes
	buf := bodyBuffers.Get().(*[]byte)
	// Sized by Content-Length when it is sent and within the limit, so
	// that the body is read into one buffer rather than grown into it.
	b := bytes.NewBuffer((*buf)[:0])
	if n := req.ContentLength; n > 0 && n <= limit {
		b.Grow(int(n) + bytes.MinRead)
	}
	_, err := b.ReadFrom(http.MaxBytesReader(nil, req.Body, limit))
	*buf = b.Bytes()
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		releaseBody(buf)
		return nil, &httpError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body larger than %d bytes", limit)}
	case err != nil:
		releaseBody(buf)
		return nil, &httpError{code: http.StatusBadRequest, msg: "read body: " + err.Error()}
	}
	return buf, nil
}

// gunzip decompresses a body, up to MaxRequestBytes too.
func (r *Receiver) gunzip(wire []byte) ([]byte, error) {
	limit := r.cfg.MaxRequestBytes
	zr, err := gzip.NewReader(bytes.NewReader(wire))
	if err != nil {
		return nil, &httpError{code: http.StatusBadRequest, msg: "decompress body: " + err.Error()}
	}
	defer zr.Close()
	// Read one byte past the limit so a decompression bomb is caught without
	// allocating more than the limit.
	body, err := io.ReadAll(io.LimitReader(zr, limit+1))
	switch {
	case err != nil:
		return nil, &httpError{code: http.StatusBadRequest, msg: "read body: " + err.Error()}
	case int64(len(body)) > limit:
		return nil, &httpError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("decompressed body larger than %d bytes", limit)}
	}
	return body, nil
}

// convert flattens the metrics into samples. It returns how many data points
// were rejected and why (the first reason).
func (r *Receiver) convert(md pmetric.Metrics, atDoor bool) (out []sources.Sample, rejected int64, reason string) {
	reject := func(why string) {
		rejected++
		r.metrics.dropped.WithLabelValues(why).Inc()
		if reason == "" {
			reason = why
		}
	}
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		rm := rms.At(i)
		res := attrs(nil, rm.Resource().Attributes())
		sms := rm.ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				m := ms.At(k)
				if !atDoor && !r.cfg.Filter.Wants(m.Name()) {
					continue
				}
				switch m.Type() {
				case pmetric.MetricTypeHistogram:
					out = r.histograms(out, m, res, reject)
				case pmetric.MetricTypeExponentialHistogram:
					out = r.expHistograms(out, m, res, reject)
				case pmetric.MetricTypeSummary:
					out = r.summaries(out, m, res, reject)
				case pmetric.MetricTypeSum:
					out = r.sums(out, m, res, reject)
				case pmetric.MetricTypeGauge:
					dps := m.Gauge().DataPoints()
					for p := 0; p < dps.Len(); p++ {
						dp := dps.At(p)
						if !finite(numberValue(dp)) {
							reject(invalidValue)
							continue
						}
						ls, ok := r.labels(m.Name(), res, dp.Attributes(), reject)
						if !ok {
							continue
						}
						if err := r.cum.CheckTime(int64(dp.Timestamp())); err != nil {
							r.refused(err, reject)
							continue
						}
						out = append(out, sources.Sample{Metric: m.Name(), Labels: ls,
							Kind: sources.KindGauge, TimeUnixNano: int64(dp.Timestamp()), Value: numberValue(dp)})
					}
				default:
					reject("unsupported_type_" + strings.ToLower(m.Type().String()))
				}
			}
		}
	}
	return out, rejected, reason
}

func (r *Receiver) histograms(out []sources.Sample, m pmetric.Metric, res sources.Labels, reject func(string)) []sources.Sample {
	h := m.Histogram()
	dps := h.DataPoints()
	for p := 0; p < dps.Len(); p++ {
		dp := dps.At(p)
		ls, ok := r.labels(m.Name(), res, dp.Attributes(), reject)
		if !ok {
			continue
		}
		// Buckets as Prometheus counts them, +Inf included, before any
		// is copied.
		if max(dp.BucketCounts().Len(), dp.ExplicitBounds().Len()+1) > r.cfg.MaxBuckets {
			reject(sources.DropTooManyBuckets)
			continue
		}
		bounds := dp.ExplicitBounds().AsRaw()
		counts := make([]float64, dp.BucketCounts().Len())
		for i := range counts {
			counts[i] = float64(dp.BucketCounts().At(i))
		}
		if len(counts) != 0 && len(counts) != len(bounds)+1 {
			reject("invalid_bucket_layout")
			continue
		}
		s := sources.Sample{Metric: m.Name(), Labels: ls, Kind: sources.KindHistogram, TimeUnixNano: int64(dp.Timestamp()), StartUnixNano: int64(dp.StartTimestamp())}
		count, sum := float64(dp.Count()), dp.Sum()
		if !finite(sum) {
			reject(invalidValue)
			continue
		}
		if h.AggregationTemporality() != pmetric.AggregationTemporalityCumulative {
			if err := r.cum.CheckTime(int64(dp.Timestamp())); err != nil {
				r.refused(err, reject)
				continue
			}
		} else {
			dc, ds, db, from, ok, err := r.cum.Histogram(r.key(m.Name(), ls), int64(dp.StartTimestamp()), int64(dp.Timestamp()), count, sum, bounds, counts)
			if err != nil {
				r.refused(err, reject)
				continue
			}
			if !ok {
				continue
			}
			count, sum, counts, s.StartUnixNano = dc, ds, db, from
		}
		s.Count, s.Sum = count, sum
		if len(counts) > 0 {
			s.Buckets = make([]sources.Bucket, len(counts))
			for i, c := range counts {
				ub := inf
				if i < len(bounds) {
					ub = bounds[i]
				}
				s.Buckets[i] = sources.Bucket{UpperBound: ub, Count: c}
			}
		}
		out = append(out, s)
	}
	return out
}

func (r *Receiver) sums(out []sources.Sample, m pmetric.Metric, res sources.Labels, reject func(string)) []sources.Sample {
	sum := m.Sum()
	dps := sum.DataPoints()
	for p := 0; p < dps.Len(); p++ {
		dp := dps.At(p)
		ls, ok := r.labels(m.Name(), res, dp.Attributes(), reject)
		if !ok {
			continue
		}
		v := numberValue(dp)
		if !finite(v) || (sum.IsMonotonic() && v < 0) {
			reject(invalidValue) // a counter never goes down; nothing is NaN
			continue
		}
		kind, from := sources.KindCounter, int64(dp.StartTimestamp()) // a delta's interval
		if sum.AggregationTemporality() != pmetric.AggregationTemporalityCumulative || !sum.IsMonotonic() {
			if err := r.cum.CheckTime(int64(dp.Timestamp())); err != nil {
				r.refused(err, reject)
				continue
			}
		}
		switch {
		case !sum.IsMonotonic():
			kind, from = sources.KindGauge, 0 // an up-down counter reads like a gauge
		case sum.AggregationTemporality() == pmetric.AggregationTemporalityCumulative:
			inc, f, ok, err := r.cum.Counter(r.key(m.Name(), ls), int64(dp.StartTimestamp()), int64(dp.Timestamp()), v)
			if err != nil {
				r.refused(err, reject)
				continue
			}
			if !ok {
				continue
			}
			v, from = inc, f
		}
		out = append(out, sources.Sample{Metric: m.Name(), Labels: ls, Kind: kind, TimeUnixNano: int64(dp.Timestamp()), StartUnixNano: from, Value: v})
	}
	return out
}

var inf = math.Inf(1)

// expHistograms converts exponential histograms; a change of scale between
// points is merged by downscaling.
func (r *Receiver) expHistograms(out []sources.Sample, m pmetric.Metric, res sources.Labels, reject func(string)) []sources.Sample {
	eh := m.ExponentialHistogram()
	dps := eh.DataPoints()
	for p := 0; p < dps.Len(); p++ {
		dp := dps.At(p)
		ls, ok := r.labels(m.Name(), res, dp.Attributes(), reject)
		if !ok {
			continue
		}
		if dp.Scale() < -10 || dp.Scale() > 20 || !expBucketsValid(dp.Positive()) || !expBucketsValid(dp.Negative()) {
			reject("invalid_exponential_histogram")
			continue
		}
		h := sources.NativeHistogram{Scale: dp.Scale(), ZeroThreshold: dp.ZeroThreshold(), ZeroCount: float64(dp.ZeroCount()),
			Positive: expBuckets(dp.Positive()), Negative: expBuckets(dp.Negative())}
		if sources.NativeBuckets(h) > r.cfg.MaxBuckets {
			reject(sources.DropTooManyBuckets)
			continue
		}
		count, sum, from := float64(dp.Count()), dp.Sum(), int64(dp.StartTimestamp())
		if !finite(sum) || !finite(h.ZeroThreshold) {
			reject(invalidValue)
			continue
		}
		if eh.AggregationTemporality() != pmetric.AggregationTemporalityCumulative {
			if err := r.cum.CheckTime(int64(dp.Timestamp())); err != nil {
				r.refused(err, reject)
				continue
			}
		} else {
			dc, ds, dh, f, ok, err := r.cum.Native(r.key(m.Name(), ls), int64(dp.StartTimestamp()), int64(dp.Timestamp()), count, sum, h)
			if err != nil {
				r.refused(err, reject)
				continue
			}
			if !ok {
				continue
			}
			count, sum, h, from = dc, ds, dh, f
		}
		out = append(out, sources.Sample{Metric: m.Name(), Labels: ls, Kind: sources.KindHistogram,
			TimeUnixNano: int64(dp.Timestamp()), StartUnixNano: from, Count: count, Sum: sum, Native: &h})
	}
	return out
}

// expBucketsValid keeps a side's last index in int32. Its size is bounded
// by MaxBuckets (OpenTelemetry SDKs default to 160 buckets a side).
func expBucketsValid(b pmetric.ExponentialHistogramDataPointBuckets) bool {
	return int64(b.Offset())+int64(b.BucketCounts().Len()) <= math.MaxInt32
}

func expBuckets(b pmetric.ExponentialHistogramDataPointBuckets) sources.ExpBuckets {
	counts := make([]float64, b.BucketCounts().Len())
	for i := range counts {
		counts[i] = float64(b.BucketCounts().At(i))
	}
	return sources.ExpBuckets{Offset: b.Offset(), Counts: counts}
}

// summaries keep count and sum (as increments); quantiles cannot be merged
// across instances or ticks and are not used.
func (r *Receiver) summaries(out []sources.Sample, m pmetric.Metric, res sources.Labels, reject func(string)) []sources.Sample {
	dps := m.Summary().DataPoints()
	for p := 0; p < dps.Len(); p++ {
		dp := dps.At(p)
		ls, ok := r.labels(m.Name(), res, dp.Attributes(), reject)
		if !ok {
			continue
		}
		if !finite(dp.Sum()) {
			reject(invalidValue)
			continue
		}
		dc, ds, _, from, ok, err := r.cum.Histogram(r.key(m.Name(), ls), int64(dp.StartTimestamp()), int64(dp.Timestamp()), float64(dp.Count()), dp.Sum(), nil, nil)
		if err != nil {
			r.refused(err, reject)
			continue
		}
		if ok {
			out = append(out, sources.Sample{Metric: m.Name(), Labels: ls, Kind: sources.KindHistogram,
				TimeUnixNano: int64(dp.Timestamp()), StartUnixNano: from, Count: dc, Sum: ds})
		}
	}
	return out
}

// key is a series' key in the cumulative state, counted in its service
// version's budget.
func (r *Receiver) key(metric string, ls sources.Labels) sources.SeriesKey {
	return sources.Key(metric, "", ls).In(sources.CohortOf(ls, r.cfg.VersionLabels))
}

// refused accounts for a point the cumulative state refused, under the
// reason its error names. A duplicate or out-of-order point (a retry, or a
// copy in the same request) adds nothing that is not counted already: it
// is counted as dropped, not rejected, so that a retried export is not
// answered with an error. Any other refusal is rejected through partial
// success.
func (r *Receiver) refused(err error, reject func(string)) {
	switch reason := sources.DropReason(err); reason {
	case sources.DropDuplicate, sources.DropOutOfOrder:
		r.metrics.dropped.WithLabelValues(reason).Inc()
	default:
		reject(reason)
	}
}

// labels flattens resource and point attributes, enforcing the label limits.
func (r *Receiver) labels(metric string, res sources.Labels, pt pcommon.Map, reject func(string)) (sources.Labels, bool) {
	if len(res)+pt.Len() > r.cfg.MaxLabels {
		reject("too_many_labels")
		return nil, false
	}
	ls := pointLabels(res, pt)
	for _, l := range ls {
		if len(l.Value) > r.cfg.MaxLabelValueLength || len(l.Name) > r.cfg.MaxLabelValueLength {
			reject("label_too_long")
			return nil, false
		}
	}
	// Another service's series: accepted, and dropped before any state.
	return ls, sources.WantsSeries(r.cfg.Filter, metric, ls)
}

// invalidValue is the reason a point with a value no metric can have (NaN,
// ±Inf, a counter going negative) is rejected at the door, so that it can
// reach no test, verdict, command or JSON encoder.
const invalidValue = "invalid_value"

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func numberValue(dp pmetric.NumberDataPoint) float64 {
	if dp.ValueType() == pmetric.NumberDataPointValueTypeInt {
		return float64(dp.IntValue())
	}
	return dp.DoubleValue()
}

func attrs(ls sources.Labels, m pcommon.Map) sources.Labels {
	m.Range(func(k string, v pcommon.Value) bool {
		ls = append(ls, sources.Label{Name: k, Value: v.AsString()})
		return true
	})
	return ls
}

func pointLabels(res sources.Labels, pt pcommon.Map) sources.Labels {
	ls := make(sources.Labels, 0, len(res)+pt.Len())
	ls = append(ls, res...)
	return attrs(ls, pt).Sort()
}
