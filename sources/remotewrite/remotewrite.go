// Package remotewrite receives Prometheus remote write 1.0
// (prometheus.WriteRequest) and 2.0 (io.prometheus.write.v2.Request) on
// POST /api/v1/write, decodes the series into sources.PromPoint, normalises
// them through sources.PromConverter and hands the samples to a
// sources.Appender. It owns the protocol: content negotiation, snappy, size
// and label limits, status codes and the 2.0 written-count headers. It knows
// nothing of guards or detectors: which metrics matter comes in through a
// sources.Filter.
package remotewrite

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/sources"
)

// The message types of the two protocol versions, as the proto parameter of
// the Content-Type names them.
const (
	messageV1 = "prometheus.WriteRequest"
	messageV2 = "io.prometheus.write.v2.Request"

	contentProto = "application/x-protobuf"
)

// The response headers of remote write 2.0.
const (
	HeaderSamplesWritten    = "X-Prometheus-Remote-Write-Samples-Written"
	HeaderHistogramsWritten = "X-Prometheus-Remote-Write-Histograms-Written"
	HeaderExemplarsWritten  = "X-Prometheus-Remote-Write-Exemplars-Written"
)

// Drop reasons of this package, besides the sources.Drop* ones the converter
// reports. Each names why samples or histogram samples were not written.
const (
	DropLabelCount    = "label_limit"
	DropLabelName     = "label_name_too_long"
	DropLabelValue    = "label_value_too_long"
	DropInvalidLabel  = sources.DropInvalidLabel // refused (400), as sources.DropDuplicateLabel
	DropMixedSeries   = "samples_and_histograms"
	DropMetadataLimit = "metadata_limit"
	DropInvalidSchema = "invalid_histogram_schema"
	// DropNativeBucketLimit: the request's native histograms have more
	// buckets than MaxNativeBuckets.
	DropNativeBucketLimit = "native_bucket_limit"
)

// Defaults of the Config limits.
const (
	DefaultMaxRequestBytes    = 16 << 20
	DefaultMaxDecodedBytes    = 32 << 20
	DefaultMaxLabelsPerSeries = 64
	DefaultMaxLabelNameBytes  = 2048
	DefaultMaxLabelValueBytes = 2048
	DefaultMaxSeries          = 100_000
	DefaultMaxMetricFamilies  = 10_000
	DefaultMaxNativeBuckets   = 1 << 21
)

// Config is what a Receiver is built from. Zero limits take the defaults.
type Config struct {
	// Appender receives the normalised samples; it is required.
	Appender sources.Appender
	// Filter says which metrics anyone wants; the rest are accepted and
	// dropped at the door. Nil wants everything.
	Filter sources.Filter
	// MaxRequestBytes bounds the snappy-compressed body.
	MaxRequestBytes int64
	// MaxDecodedBytes bounds the body after snappy decoding. The length
	// snappy declares is checked before anything is allocated for it.
	MaxDecodedBytes int64
	// A series with more labels, or a longer label name or value, is dropped
	// (and counted); the rest of its request is accepted.
	MaxLabelsPerSeries int
	MaxLabelNameBytes  int
	MaxLabelValueBytes int
	// MaxNativeBuckets bounds the buckets of all native histograms of one
	// request, counting every bucket from the lowest populated one to the
	// highest (they are expanded so): a histogram past it is dropped. Spans
	// of a few bytes can describe millions of buckets.
	MaxNativeBuckets int64
	// MaxSeries bounds the cumulative-to-increment state.
	MaxSeries int
	// MaxSeriesPerVersion bounds the state one service version may hold:
	// series with the same values of VersionLabels (the guards' service
	// and version labels) share a budget. No VersionLabels: no such bound.
	MaxSeriesPerVersion int
	VersionLabels       []string
	// MaxTimestampAhead: a point stamped further after its receive time is
	// refused (too_far_ahead) and changes no state.
	MaxTimestampAhead time.Duration
	// MaxPointsPerRequest: a request with more samples and histogram
	// samples is refused whole with 413, before any of it is kept.
	MaxPointsPerRequest int
	// MaxBucketsPerHistogram: a histogram sample with more buckets is
	// refused (too_many_buckets).
	MaxBucketsPerHistogram int
	// MaxMetricFamilies bounds the metric types remembered from remote
	// write 1.0 metadata, which Prometheus sends apart from the samples.
	MaxMetricFamilies int
	Logger            hclog.Logger
	Registerer        prometheus.Registerer
}

// Receiver is the remote write endpoint.
type Receiver struct {
	cfg      Config
	conv     *sources.PromConverter
	families *familyTypes
	metrics  *metrics
	log      hclog.Logger
	bufs     sync.Pool // *[]byte, for compressed and decoded bodies
	batches  sync.Pool // *batch
}

type metrics struct {
	requests *prometheus.CounterVec
	samples  prometheus.Counter
	written  *prometheus.CounterVec
	dropped  *prometheus.CounterVec
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollguard_remotewrite_requests_total",
			Help: "Remote write requests received, by protocol version and response code.",
		}, []string{"protocol", "code"}),
		samples: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rollguard_remotewrite_samples_accepted_total",
			Help: "Normalised samples from remote write handed on.",
		}),
		written: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollguard_remotewrite_written_total",
			Help: "Samples, histogram samples and exemplars accepted (handed on, or of no interest to any guard), as the 2.0 written headers report them.",
		}, []string{"type"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollguard_remotewrite_dropped_total",
			Help: "Remote write samples and histogram samples not accepted, by reason; metadata_limit counts 1.0 metric families not remembered.",
		}, []string{"reason"}),
	}
	if r != nil {
		r.MustRegister(m.requests, m.samples, m.written, m.dropped)
	}
	return m
}

// NewReceiver builds a receiver.
func NewReceiver(cfg Config) *Receiver {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Filter == nil {
		cfg.Filter = sources.FilterFunc(func(string) bool { return true })
	}
	setDefault(&cfg.MaxRequestBytes, DefaultMaxRequestBytes)
	setDefault(&cfg.MaxDecodedBytes, DefaultMaxDecodedBytes)
	setDefault(&cfg.MaxLabelsPerSeries, DefaultMaxLabelsPerSeries)
	setDefault(&cfg.MaxLabelNameBytes, DefaultMaxLabelNameBytes)
	setDefault(&cfg.MaxLabelValueBytes, DefaultMaxLabelValueBytes)
	setDefault(&cfg.MaxSeries, DefaultMaxSeries)
	setDefault(&cfg.MaxMetricFamilies, DefaultMaxMetricFamilies)
	setDefault(&cfg.MaxNativeBuckets, DefaultMaxNativeBuckets)
	setDefault(&cfg.MaxSeriesPerVersion, configs.DefaultLimits.MaxSeriesPerVersion)
	setDefault(&cfg.MaxTimestampAhead, time.Duration(configs.DefaultLimits.MaxTimestampAhead))
	setDefault(&cfg.MaxPointsPerRequest, configs.DefaultLimits.MaxPointsPerRequest)
	setDefault(&cfg.MaxBucketsPerHistogram, configs.DefaultLimits.MaxBucketsPerHistogram)
	return &Receiver{
		cfg: cfg,
		conv: newConverter(cfg.Filter, sources.Limits{MaxSeries: cfg.MaxSeries,
			MaxSeriesPerVersion: cfg.MaxSeriesPerVersion, CohortLabels: cfg.VersionLabels,
			MaxTimestampAhead: cfg.MaxTimestampAhead, MaxBucketsPerHistogram: cfg.MaxBucketsPerHistogram}),
		families: &familyTypes{types: map[string]familyType{}, max: cfg.MaxMetricFamilies},
		metrics:  newMetrics(cfg.Registerer),
		log:      cfg.Logger,
	}
}

func setDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Handler serves POST /api/v1/write.
func (r *Receiver) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/write", r.serveWrite)
	return mux
}

type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func errorf(code int, format string, args ...any) error {
	return &httpError{code, fmt.Sprintf(format, args...)}
}

// written is what a request had accepted, as the 2.0 headers report it.
type written struct{ samples, histograms, exemplars int }

func (r *Receiver) serveWrite(w http.ResponseWriter, req *http.Request) {
	protocol := "unknown"
	var wr written
	err := func() error {
		if req.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			return errorf(http.StatusMethodNotAllowed, "method %s not allowed: remote write is POST /api/v1/write", req.Method)
		}
		msg, err := messageType(req.Header.Get("Content-Type"))
		if err != nil {
			return err
		}
		protocol = "1.0"
		if msg == messageV2 {
			protocol = "2.0"
		}
		body, release, err := r.readBody(req)
		if err != nil {
			return err
		}
		defer release()
		wr, err = r.write(msg, body)
		return err
	}()
	if protocol == "2.0" {
		// Sent on errors too: they say how much of the request was written
		// (nothing, since a request is decoded whole before any of it is).
		h := w.Header()
		h.Set(HeaderSamplesWritten, strconv.Itoa(wr.samples))
		h.Set(HeaderHistogramsWritten, strconv.Itoa(wr.histograms))
		h.Set(HeaderExemplarsWritten, strconv.Itoa(wr.exemplars))
	}
	if err != nil {
		var he *httpError
		if !errors.As(err, &he) {
			he = &httpError{http.StatusInternalServerError, err.Error()}
		}
		r.metrics.requests.WithLabelValues(protocol, strconv.Itoa(he.code)).Inc()
		if he.code >= 500 {
			r.log.Warn("remote write request failed", "protocol", protocol, "code", he.code, "error", he.msg)
		} else {
			r.log.Debug("remote write request refused", "protocol", protocol, "code", he.code, "error", he.msg)
		}
		http.Error(w, he.msg, he.code)
		return
	}
	r.metrics.requests.WithLabelValues(protocol, "204").Inc()
	w.WriteHeader(http.StatusNoContent)
}

// messageType negotiates the protocol version as the remote write 2.0
// specification says: the proto parameter of application/x-protobuf names the
// message, and its absence means 1.0. A missing Content-Type is taken as 1.0,
// as Prometheus' own receiver does, for 1.0 senders that never set it.
func messageType(ct string) (string, error) {
	if strings.TrimSpace(ct) == "" {
		return messageV1, nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != contentProto {
		return "", errorf(http.StatusUnsupportedMediaType,
			"unsupported content type %q: use %s (remote write 1.0) or %s;proto=%s (remote write 2.0)", ct, contentProto, contentProto, messageV2)
	}
	switch proto, ok := params["proto"]; {
	case !ok, proto == messageV1:
		return messageV1, nil
	case proto == messageV2:
		return messageV2, nil
	default:
		return "", errorf(http.StatusUnsupportedMediaType,
			"unsupported remote write message %q: this receiver accepts proto=%s and proto=%s", proto, messageV1, messageV2)
	}
}

// maxPooledBuffer is the largest buffer kept for reuse: a rare huge request
// must not pin its memory.
const maxPooledBuffer = 4 << 20

func (r *Receiver) getBuf() *[]byte {
	if b, ok := r.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 64<<10)
	return &b
}

func (r *Receiver) putBuf(b *[]byte) {
	if cap(*b) <= maxPooledBuffer {
		*b = (*b)[:0]
		r.bufs.Put(b)
	}
}

// readBody reads and snappy-decodes the body within the two size limits. A
// body whose snappy header claims more than MaxDecodedBytes is refused before
// anything is allocated for it.
func (r *Receiver) readBody(req *http.Request) (body []byte, release func(), err error) {
	if enc := strings.TrimSpace(req.Header.Get("Content-Encoding")); enc != "" && !strings.EqualFold(enc, "snappy") {
		// A missing Content-Encoding is taken as snappy, as Prometheus does.
		return nil, nil, errorf(http.StatusUnsupportedMediaType,
			"unsupported content encoding %q: remote write bodies are snappy-compressed (block format), Content-Encoding: snappy", enc)
	}
	limit := r.cfg.MaxRequestBytes
	if req.ContentLength > limit {
		return nil, nil, errorf(http.StatusRequestEntityTooLarge,
			"request body of %d bytes is larger than the limit of %d bytes", req.ContentLength, limit)
	}
	cbuf := r.getBuf()
	defer r.putBuf(cbuf)
	compressed, err := readAll(io.LimitReader(req.Body, limit+1), (*cbuf)[:0], req.ContentLength)
	*cbuf = compressed[:0]
	switch {
	case err != nil:
		return nil, nil, errorf(http.StatusBadRequest, "read request body: %v", err)
	case int64(len(compressed)) > limit:
		return nil, nil, errorf(http.StatusRequestEntityTooLarge, "request body larger than the limit of %d bytes", limit)
	}
	n, err := snappy.DecodedLen(compressed)
	if err != nil {
		return nil, nil, errorf(http.StatusBadRequest, "decode snappy body: %s", snappyError(err))
	}
	if int64(n) > r.cfg.MaxDecodedBytes {
		return nil, nil, errorf(http.StatusRequestEntityTooLarge,
			"snappy body decodes to %d bytes, more than the limit of %d bytes", n, r.cfg.MaxDecodedBytes)
	}
	dbuf := r.getBuf()
	if cap(*dbuf) < n {
		*dbuf = make([]byte, n)
	}
	body, err = snappy.Decode((*dbuf)[:cap(*dbuf)], compressed)
	if err != nil {
		r.putBuf(dbuf)
		return nil, nil, errorf(http.StatusBadRequest, "decode snappy body: %s", snappyError(err))
	}
	return body, func() { r.putBuf(dbuf) }, nil
}

// snappyError words the decoder's errors (which are S2's, a snappy
// superset) for a snappy sender.
func snappyError(err error) string {
	switch {
	case errors.Is(err, snappy.ErrCorrupt):
		return "corrupt input: the body must be snappy block format (not framed, not gzip)"
	case errors.Is(err, snappy.ErrTooLarge):
		return "declared decoded length too large"
	}
	return err.Error()
}

// readAll reads rd into buf, growing it as needed; size is a hint (the
// Content-Length, or -1).
func readAll(rd io.Reader, buf []byte, size int64) ([]byte, error) {
	if size > 0 && int64(cap(buf)) < size+1 {
		buf = make([]byte, 0, size+1) // +1: room to see EOF without growing
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// write decodes a whole request, and only then converts and appends it, so a
// malformed request changes nothing.
func (r *Receiver) write(msg string, body []byte) (written, error) {
	b := r.getBatch()
	defer r.putBatch(b)
	var err error
	if msg == messageV2 {
		err = r.decodeV2(body, b)
	} else {
		err = r.decodeV1(body, b)
	}
	if err != nil {
		return written{}, decodeError(msg, err)
	}
	if len(b.families) > 0 {
		if n := r.families.merge(b.families); n > 0 {
			b.drops[DropMetadataLimit] += n
		}
	}
	// Floats and native histograms are converted apart so that the
	// converter's drops can be told apart in the written counts. Classic
	// histograms are floats: their series stay together.
	floatDrops, histDrops := b.floatDrops, b.histDrops
	samples, refused := r.conv.Convert(b.floats, floatDrops)
	if len(b.hists) > 0 {
		hs, hr := r.conv.Convert(b.hists, histDrops)
		samples = append(samples, hs...)
		if refused == nil {
			refused = hr
		}
	}
	if b.refused != nil {
		refused = b.refused // the decoder's came first
	}
	wr := b.written
	wr.samples -= lost(floatDrops)
	wr.histograms -= lost(histDrops)
	wr.samples, wr.histograms = max(wr.samples, 0), max(wr.histograms, 0)
	for _, d := range []map[string]int{b.drops, floatDrops, histDrops} {
		for reason, n := range d {
			if n > 0 && reason != sources.DropSummaryQuantile {
				r.metrics.dropped.WithLabelValues(reason).Add(float64(n))
			}
		}
	}
	if len(samples) > 0 {
		if err := r.cfg.Appender.Append(samples); err != nil {
			// Not the sender's fault: 503 asks it to retry.
			return written{}, errorf(http.StatusServiceUnavailable, "append samples: %v", err)
		}
		r.metrics.samples.Add(float64(len(samples)))
	}
	r.metrics.written.WithLabelValues("sample").Add(float64(wr.samples))
	r.metrics.written.WithLabelValues("histogram").Add(float64(wr.histograms))
	r.metrics.written.WithLabelValues("exemplar").Add(float64(wr.exemplars))
	if refused != nil {
		// The remote write specification: invalid samples are a 400 (the
		// sender must not retry them), and the written headers say what of
		// the request was kept.
		return wr, errorf(http.StatusBadRequest, "%d of the request's samples refused, first %s (%s); the rest of the request was written",
			refusedCount(b.drops)+refusedCount(floatDrops)+refusedCount(histDrops), refused, refusalWords[refused.Reason])
	}
	return wr, nil
}

// refusalWords say what a refusal's reason means, for the sender.
var refusalWords = map[string]string{
	sources.DropNoName:                "a series without a metric name (a __name__ label with a value): the specification requires one",
	sources.DropInvalidLabel:          "a label with an empty name, or a label name or value that is not UTF-8: the specification requires non-empty UTF-8 names and UTF-8 values",
	sources.DropDuplicateLabel:        "two labels of the same name: the specification requires label names to be unique within a series",
	sources.DropInvalidValue:          "a counter or histogram count that is NaN, infinite or negative",
	sources.DropInconsistentHistogram: "histogram buckets that do not add up to the count, or cumulative buckets that go down",
	sources.DropTooManyBuckets:        "more histogram buckets than limits.max_buckets_per_histogram",
	sources.DropTooFarAhead:           "stamped further ahead of the receive time than limits.max_timestamp_ahead",
}

// refusedCount counts the converter's drops that are the sender's error.
func refusedCount(drops map[string]int) int {
	n := 0
	for reason, c := range drops {
		if sources.Rejected(reason) {
			n += c
		}
	}
	return n
}

// decodeError is the answer to a request that could not be decoded: 413
// for one with too many points, 400 for one that is malformed.
func decodeError(msg string, err error) error {
	var many *tooManyPoints
	if errors.As(err, &many) {
		return errorf(http.StatusRequestEntityTooLarge,
			"remote write %s request carries more than %d samples and histogram samples (limits.max_points_per_request): nothing was written; send smaller requests (queue_config.max_samples_per_send)",
			protocolOf(msg), many.max)
	}
	return errorf(http.StatusBadRequest, "decode remote write %s request: %v", protocolOf(msg), err)
}

// tooManyPoints is a request past MaxPointsPerRequest, found while decoding.
type tooManyPoints struct{ max int }

func (e *tooManyPoints) Error() string {
	return fmt.Sprintf("more than %d samples and histogram samples", e.max)
}

// countPoints charges a series' samples and histogram samples to the
// request's MaxPointsPerRequest, by the inputs' one rule; decoding stops
// at the first point past it, so the message says "more than".
func (b *batch) countPoints(n int) error {
	b.points += n
	if sources.CheckPointsPerRequest(b.points, b.r.cfg.MaxPointsPerRequest) != nil {
		return &tooManyPoints{b.r.cfg.MaxPointsPerRequest}
	}
	return nil
}

// lost counts the converter's drops that are data lost. Summary quantiles
// are of no interest to rollguard: deliberately dropped, so accepted.
func lost(drops map[string]int) int {
	n := 0
	for reason, c := range drops {
		if reason != sources.DropSummaryQuantile {
			n += c
		}
	}
	return n
}

func protocolOf(msg string) string {
	if msg == messageV2 {
		return "2.0"
	}
	return "1.0"
}

// newConverter converts classic histograms series by series: Prometheus
// shards a histogram's series across remote-write requests.
func newConverter(f sources.Filter, l sources.Limits) *sources.PromConverter {
	c := sources.NewPromConverter(f, l)
	c.PerSeries = true
	return c
}
