package sources

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
)

// DecodeLimiter bounds how many requests are decoded at once across the
// inputs that share it (OTLP over HTTP and gRPC, remote write). Decoding
// is where a small request can cost hundreds of megabytes (a compressed
// body inflates, and pdata or protobuf builds its objects), so the bound
// on memory is the number of slots times the cost of the largest request
// the size limits let through, not the number of clients.
//
// A request waits for a slot; one whose context ends first is refused
// (ErrDecodeBusy), which the inputs answer with 503 or gRPC Unavailable so
// that the client retries later. A slot is held only while the CPU works:
// the inputs read the body off the network before they ask for one, so a
// slow client cannot hold a slot while it trickles its bytes in.
//
// A nil *DecodeLimiter lets every request through.
type DecodeLimiter struct {
	slots   chan struct{}
	metrics *decodeMetrics
}

// ErrDecodeBusy is returned by Acquire when the request's context ended
// before a decode slot was free.
var ErrDecodeBusy = errors.New("sources: too many requests being decoded")

type decodeMetrics struct {
	inFlight prometheus.Gauge
	waits    *prometheus.CounterVec
	refused  *prometheus.CounterVec
}

// NewDecodeLimiter allows n decodes at once; n <= 0 means two per CPU
// (GOMAXPROCS), the limits.max_concurrent_decodes default. The metrics are
// registered on reg, which may be nil.
func NewDecodeLimiter(n int, reg prometheus.Registerer) *DecodeLimiter {
	if n <= 0 {
		n = 2 * runtime.GOMAXPROCS(0)
	}
	m := &decodeMetrics{
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rollguard_decodes_in_flight",
			Help: "Ingest requests (OTLP, remote write) being decoded now; at most limits.max_concurrent_decodes.",
		}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollguard_decode_waits_total",
			Help: "Ingest requests that found every decode slot taken and had to wait, by input.",
		}, []string{"input"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollguard_decode_refused_total",
			Help: "Ingest requests refused (503, gRPC Unavailable) because their client gave up before a decode slot was free, by input.",
		}, []string{"input"}),
	}
	if reg != nil {
		reg.MustRegister(m.inFlight, m.waits, m.refused)
	}
	return &DecodeLimiter{slots: make(chan struct{}, n), metrics: m}
}

// Acquire waits for a decode slot for a request of input ("otlp_http",
// "otlp_grpc", "remote_write"). It returns the function that gives the
// slot back, or ErrDecodeBusy once ctx ends without a slot.
func (l *DecodeLimiter) Acquire(ctx context.Context, input string) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	select {
	case l.slots <- struct{}{}:
	default:
		l.metrics.waits.WithLabelValues(input).Inc()
		select {
		case l.slots <- struct{}{}:
		case <-ctx.Done():
			l.metrics.refused.WithLabelValues(input).Inc()
			return nil, fmt.Errorf("%w: gave up waiting for a decode slot: %w", ErrDecodeBusy, context.Cause(ctx))
		}
	}
	l.metrics.inFlight.Inc()
	return func() {
		l.metrics.inFlight.Dec()
		<-l.slots
	}, nil
}

// RetryAfterSeconds is the Retry-After an input sends with its 503 when
// no decode slot was free: long enough for a busy receiver to drain.
const RetryAfterSeconds = "1"

// Wrap runs next, an input's HTTP handler, in a decode slot. The body is
// read first, outside the slot, up to prefetch bytes (the input's own
// limit on the body, which next still enforces: a body over it reaches
// next unread past that point). A request whose client gives up while it
// waits is answered 503 with Retry-After and a plain-text message.
func (l *DecodeLimiter) Wrap(input string, prefetch int64, next http.Handler) http.Handler {
	if l == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Body != nil && req.Body != http.NoBody && req.ContentLength <= prefetch {
			var buf bytes.Buffer
			_, err := buf.ReadFrom(io.LimitReader(req.Body, prefetch+1))
			if err != nil {
				// A broken body: next reads the same error from it.
				req.Body = readCloser{io.MultiReader(&buf, errReader{err}), req.Body}
			} else {
				req.Body = readCloser{io.MultiReader(&buf, req.Body), req.Body}
			}
		}
		release, err := l.Acquire(req.Context(), input)
		if err != nil {
			w.Header().Set("Retry-After", RetryAfterSeconds)
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		defer release()
		next.ServeHTTP(w, req)
	})
}

type readCloser struct {
	io.Reader
	io.Closer
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// CheckPointsPerRequest is the one rule for limits.max_points_per_request,
// shared by every input that counts the points of a request after
// decoding it and before keeping any of them: a request with more than
// limit points is refused whole (the inputs answer 413, gRPC
// InvalidArgument: retrying the same request cannot succeed, the sender
// must send smaller batches). limit <= 0 means no limit.
func CheckPointsPerRequest(points, limit int) error {
	if limit > 0 && points > limit {
		return fmt.Errorf("request carries %d data points, more than the %d allowed (limits.max_points_per_request): send smaller batches", points, limit)
	}
	return nil
}
