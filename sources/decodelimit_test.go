package sources_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rollguard/rollguard/internal/poll"
	"github.com/rollguard/rollguard/sources"
)

// TestDecodeLimiterWrap: with every slot taken a request waits; one whose
// context ends first is answered 503 with Retry-After and never reaches
// the handler; one that waits long enough gets the slot when it is given
// back, with its body whole. The gauge and counters say so.
func TestDecodeLimiterWrap(t *testing.T) {
	reg := prometheus.NewRegistry()
	l := sources.NewDecodeLimiter(1, reg)
	var served []string
	h := l.Wrap("remote_write", 8, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		served = append(served, string(b))
		w.WriteHeader(http.StatusNoContent)
	}))
	gauge := func() float64 {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "rollguard_decodes_in_flight" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return -1
	}
	counter := func(name string) float64 {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == name {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return 0
	}

	release, err := l.Acquire(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if g := gauge(); g != 1 {
		t.Fatalf("rollguard_decodes_in_flight = %v with the slot held, want 1", g)
	}

	// Refused: the client gives up while it waits.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodPost, "/api/v1/write", strings.NewReader("refused")))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != sources.RetryAfterSeconds ||
		!strings.Contains(rec.Body.String(), "gave up waiting for a decode slot") {
		t.Fatalf("status %d, Retry-After %q, body %q; want 503, Retry-After and why", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	if got := counter("rollguard_decode_refused_total"); got != 1 {
		t.Errorf("rollguard_decode_refused_total = %v, want 1", got)
	}

	// Waiting: served once the slot is given back. Its body (longer than
	// the prefetch of 8 bytes) arrives whole.
	done := make(chan int)
	go func() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/v1/write", strings.NewReader("waited for a slot")))
		done <- rec.Code
	}()
	poll.Until(t, 10*time.Second, func() error {
		if got := counter("rollguard_decode_waits_total"); got != 2 {
			return fmt.Errorf("rollguard_decode_waits_total = %v, want 2", got)
		}
		return nil
	})
	release()
	if code := <-done; code != http.StatusNoContent {
		t.Fatalf("waiting request: status %d, want 204", code)
	}
	if want := []string{"waited for a slot"}; len(served) != 1 || served[0] != want[0] {
		t.Errorf("handler served %q, want %q", served, want)
	}
	if g := gauge(); g != 0 {
		t.Errorf("rollguard_decodes_in_flight = %v after all are done, want 0", g)
	}
}

// TestDecodeLimiterBodyBeforeSlot: the body is read before the request
// takes a slot, so a slow client holds none while its bytes trickle in;
// a body that breaks off reaches the handler as the same error.
func TestDecodeLimiterBodyBeforeSlot(t *testing.T) {
	l := sources.NewDecodeLimiter(1, nil)
	pr, pw := io.Pipe()
	var got []byte
	h := l.Wrap("remote_write", 1<<10, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		got, _ = io.ReadAll(req.Body)
	}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/", pr))
	}()
	if _, err := pw.Write([]byte("slow ")); err != nil {
		t.Fatal(err)
	}
	// The slow request holds no slot: another request can take it now.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	release, err := l.Acquire(ctx, "test")
	if err != nil {
		t.Fatalf("a slow upload holds the only slot: %v", err)
	}
	release()
	_, _ = pw.Write([]byte("body"))
	_ = pw.Close()
	<-done
	if string(got) != "slow body" {
		t.Errorf("handler read %q, want %q", got, "slow body")
	}

	broken := errors.New("connection reset")
	var readErr error
	h = l.Wrap("remote_write", 1<<10, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, readErr = io.ReadAll(req.Body)
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/", io.MultiReader(bytes.NewReader([]byte("part")), iotestErr{broken})))
	if !errors.Is(readErr, broken) {
		t.Errorf("handler read error %v, want %v", readErr, broken)
	}
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }

// TestDecodeLimiterNil: a nil limiter lets everything through.
func TestDecodeLimiterNil(t *testing.T) {
	var l *sources.DecodeLimiter
	release, err := l.Acquire(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	release()
	next := http.NotFoundHandler()
	if h := l.Wrap("x", 1, next); fmt.Sprintf("%p", h) != fmt.Sprintf("%p", next) {
		t.Error("a nil limiter wraps the handler")
	}
}

// TestCheckPointsPerRequest: the limit itself is allowed, and 0 means none.
func TestCheckPointsPerRequest(t *testing.T) {
	for _, tt := range []struct {
		points, limit int
		ok            bool
	}{{10, 10, true}, {11, 10, false}, {1 << 30, 0, true}} {
		if err := sources.CheckPointsPerRequest(tt.points, tt.limit); (err == nil) != tt.ok {
			t.Errorf("CheckPointsPerRequest(%d, %d) = %v, want ok=%v", tt.points, tt.limit, err, tt.ok)
		}
	}
}
