package scrape

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rollguard/rollguard/sources"
)

// app is a service instrumented with client_golang, served by promhttp.
type app struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	srv      *httptest.Server

	mu     sync.Mutex
	served []string // the Content-Type of every response
}

func newApp(t testing.TB, opts promhttp.HandlerOpts) *app {
	t.Helper()
	a := &app{reg: prometheus.NewRegistry()}
	a.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "http_requests_total", Help: "Requests served.",
	}, []string{"code"})
	a.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "http_request_duration_seconds", Help: "Request latency.",
		Buckets: []float64{0.1, 0.5, 1},
		// Factor 2 is schema 0: bucket k holds (2^(k-1), 2^k].
		NativeHistogramBucketFactor: 2,
	}, []string{"code"})
	a.reg.MustRegister(a.requests, a.latency)
	h := promhttp.HandlerFor(a.reg, opts)
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		a.mu.Lock()
		a.served = append(a.served, w.Header().Get("Content-Type"))
		a.mu.Unlock()
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *app) lastServed() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.served) == 0 {
		return ""
	}
	return a.served[len(a.served)-1]
}

// A real client_golang registry is scraped in each protocol: the right one is
// negotiated, counters become increments, and histograms become increments
// of their classic buckets or, over protobuf, of their native buckets.
func TestScrapeClientGolang(t *testing.T) {
	tests := []struct {
		name      string
		protocols string
		opts      promhttp.HandlerOpts
		served    string
		// created: the exposition carries created timestamps, so the first
		// scrape of a fresh series counts in full.
		created bool
		native  bool
	}{
		{name: "default prefers protobuf", protocols: "", opts: promhttp.HandlerOpts{EnableOpenMetrics: true},
			served: "application/vnd.google.protobuf", created: true, native: true},
		{name: "protobuf", protocols: "[PrometheusProto]",
			served: "application/vnd.google.protobuf", created: true, native: true},
		{name: "openmetrics", protocols: "[OpenMetricsText1.0.0, PrometheusText0.0.4]",
			opts:   promhttp.HandlerOpts{EnableOpenMetrics: true, EnableOpenMetricsTextCreatedSamples: true},
			served: "application/openmetrics-text", created: true},
		{name: "server without openmetrics falls back to text", protocols: "[OpenMetricsText1.0.0, PrometheusText0.0.4]",
			served: "text/plain"},
		{name: "text", protocols: "[PrometheusText0.0.4]", opts: promhttp.HandlerOpts{EnableOpenMetrics: true},
			served: "text/plain"},
		{name: "gzip disabled by the server", protocols: "[PrometheusText0.0.4]", opts: promhttp.HandlerOpts{DisableCompression: true},
			served: "text/plain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newApp(t, tt.opts)
			proto := ""
			if tt.protocols != "" {
				proto = "    scrape_protocols: " + tt.protocols + "\n"
			}
			rec := &recorder{}
			m, reg := newManager(t, rec, fmt.Sprintf(`
scrape_configs:
  - job_name: app
    scrape_interval: 1h
%s    static_configs:
      - targets: [%s]
        labels: {version: v1}
`, proto, hostOf(a.srv)))
			a.requests.WithLabelValues("200").Add(10)
			a.latency.WithLabelValues("200").Observe(0.05)
			if err := m.ScrapeNow(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := a.lastServed(); !strings.HasPrefix(got, tt.served) {
				t.Fatalf("served %q, want %s", got, tt.served)
			}
			first := rec.take()
			ok200 := []string{"code", "200", "job", "app", "instance", hostOf(a.srv), "version", "v1"}
			if c := find(first, "http_requests_total", ok200...); tt.created != (len(c) == 1 && c[0].Value == 10) {
				t.Errorf("first scrape counters %+v; created timestamps exposed: %v", c, tt.created)
			}

			a.requests.WithLabelValues("200").Add(5)
			a.requests.WithLabelValues("500").Add(2)
			for _, v := range []float64{0.3, 0.05, 3} {
				a.latency.WithLabelValues("200").Observe(v)
			}
			if err := m.ScrapeNow(context.Background()); err != nil {
				t.Fatal(err)
			}
			second := rec.take()
			if c := find(second, "http_requests_total", ok200...); len(c) != 1 || c[0].Kind != sources.KindCounter || c[0].Value != 5 {
				t.Errorf("code=200 increment = %+v, want one counter sample of 5", c)
			}
			// A series born between two scrapes counts in full when its
			// creation is known, and only sets the base otherwise.
			if c := find(second, "http_requests_total", "code", "500"); tt.created != (len(c) == 1 && c[0].Value == 2) {
				t.Errorf("new series code=500: %+v; created timestamps exposed: %v", c, tt.created)
			}
			h := find(second, "http_request_duration_seconds", ok200...)
			if len(h) != 1 {
				t.Fatalf("histogram samples = %+v, want one", h)
			}
			if h[0].Kind != sources.KindHistogram || h[0].Count != 3 || math.Abs(h[0].Sum-3.35) > 1e-9 {
				t.Errorf("histogram increment count %v sum %v, want 3 and 3.35", h[0].Count, h[0].Sum)
			}
			if tt.native {
				n := h[0].Native
				if n == nil || h[0].Buckets != nil {
					t.Fatalf("want a native histogram only, got %+v", h[0])
				}
				// OpenTelemetry index i at scale 0 holds (2^i, 2^(i+1)]:
				// 0.05 → -5, 0.3 → -2, 3 → 1.
				want := map[int32]float64{-5: 1, -2: 1, 1: 1}
				for i, c := range n.Positive.Counts {
					idx := n.Positive.Offset + int32(i)
					if c != want[idx] {
						t.Errorf("native bucket %d = %v, want %v (buckets %+v)", idx, c, want[idx], n.Positive)
					}
				}
				if n.Scale != 0 || n.Total() != 3 {
					t.Errorf("native histogram scale %d total %v, want 0 and 3", n.Scale, n.Total())
				}
			} else {
				want := []sources.Bucket{{UpperBound: 0.1, Count: 1}, {UpperBound: 0.5, Count: 1}, {UpperBound: 1, Count: 0}, {UpperBound: math.Inf(1), Count: 1}}
				if h[0].Native != nil || fmt.Sprint(h[0].Buckets) != fmt.Sprint(want) {
					t.Errorf("classic buckets %v (native %v), want %v", h[0].Buckets, h[0].Native, want)
				}
			}
			st := m.Targets()
			if len(st) != 1 || st[0].Health != HealthUp || st[0].LastError != "" || st[0].Samples == 0 ||
				st[0].URL != a.srv.URL+"/metrics" || st[0].Labels["version"] != "v1" || st[0].LastScrape.IsZero() {
				t.Errorf("targets = %+v", st)
			}
			if up := testutil.ToFloat64(m.metrics.up.WithLabelValues("app", hostOf(a.srv))); up != 1 {
				t.Errorf("rollguard_scrape_target_up = %v, want 1", up)
			}
			if n, err := testutil.GatherAndCount(reg, "rollguard_scrape_samples", "rollguard_scrape_duration_seconds"); err != nil || n != 2 {
				t.Errorf("per-target series = %d (%v), want 2", n, err)
			}
		})
	}
}

// basic auth and bearer tokens reach the target; wrong ones make it down
// with the server's answer as the error.
func TestScrapeAuth(t *testing.T) {
	check := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, p, basic := r.BasicAuth()
			if (basic && u == "rollguard" && p == "s3cret") || r.Header.Get("Authorization") == "Bearer t0ken" {
				next.ServeHTTP(w, r)
				return
			}
			http.Error(w, "who are you", http.StatusUnauthorized)
		})
	}
	srv := httptest.NewServer(check(fixedBody(ctText, "up 1\n")))
	t.Cleanup(srv.Close)
	tests := []struct {
		name, auth string
		up         bool
	}{
		{"basic auth", "basic_auth: {username: rollguard, password: s3cret}", true},
		{"wrong password", "basic_auth: {username: rollguard, password: guess}", false},
		{"authorization", "authorization: {credentials: t0ken}", true},
		{"legacy bearer_token", "bearer_token: t0ken", true},
		{"wrong token", "authorization: {credentials: nope}", false},
		{"password file", "basic_auth: {username: rollguard, password_file: " + writeFile(t, "pw", "s3cret\n") + "}", true},
		{"no credentials", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := newManager(t, &recorder{}, fmt.Sprintf(`
scrape_configs:
  - job_name: auth
    %s
    static_configs: [{targets: [%s]}]
`, tt.auth, hostOf(srv)))
			err := m.ScrapeNow(context.Background())
			st := m.Targets()[0]
			up := testutil.ToFloat64(m.metrics.up.WithLabelValues("auth", hostOf(srv)))
			if tt.up {
				if err != nil || st.Health != HealthUp || up != 1 {
					t.Errorf("want up: error %v, status %+v, up %v", err, st, up)
				}
				return
			}
			const want = "server returned HTTP status 401 Unauthorized"
			if err == nil || st.Health != HealthDown || st.LastError != want || up != 0 {
				t.Errorf("want down with %q: error %v, status %+v, up %v", want, err, st, up)
			}
			if n := testutil.ToFloat64(m.metrics.errors.WithLabelValues("auth", reasonStatus)); n != 1 {
				t.Errorf("errors{reason=status} = %v, want 1", n)
			}
		})
	}
}

func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testCA makes a CA and a server certificate for 127.0.0.1 signed by it.
func testCA(t testing.TB) (caPEM []byte, server tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rollguard test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "app"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"app.internal"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestScrapeTLS(t *testing.T) {
	caPEM, cert := testCA(t)
	srv := httptest.NewUnstartedServer(fixedBody(ctText, "up 1\n"))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := writeFile(t, "ca.pem", string(caPEM))
	tests := []struct {
		name, tls string
		wantErr   string // empty: up
	}{
		{"trusted CA", "tls_config: {ca_file: " + caFile + "}", ""},
		{"server name in the certificate", "tls_config: {ca_file: " + caFile + ", server_name: app.internal}", ""},
		{"no CA", "", "certificate signed by unknown authority"},
		{"wrong server name", "tls_config: {ca_file: " + caFile + ", server_name: other.internal}", "not other.internal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := newManager(t, &recorder{}, fmt.Sprintf(`
scrape_configs:
  - job_name: tls
    scheme: https
    %s
    static_configs: [{targets: [%s]}]
`, tt.tls, hostOf(srv)))
			err := m.ScrapeNow(context.Background())
			st := m.Targets()[0]
			if tt.wantErr == "" {
				if err != nil || st.Health != HealthUp || !strings.HasPrefix(st.URL, "https://") {
					t.Errorf("want up over https: %v %+v", err, st)
				}
				return
			}
			if err == nil || st.Health != HealthDown || !strings.Contains(st.LastError, tt.wantErr) {
				t.Errorf("want down with %q: error %v, status %+v", tt.wantErr, err, st)
			}
		})
	}
}

// Every way a scrape fails makes the target down with a clear error,
// counts the failure under its reason and appends nothing.
func TestScrapeFailures(t *testing.T) {
	gauges := func(n int) string { // valid text whose gauges would be appended at once
		var b strings.Builder
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "g{i=\"%d\"} 1\n", i)
		}
		return b.String()
	}
	exactly := func(size int) string { // a valid body of exactly size bytes
		head := "g 1\n#"
		return head + strings.Repeat("x", size-len(head)-1) + "\n"
	}
	gz := func(s string) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		_, _ = zw.Write([]byte(s))
		_ = zw.Close()
		return b.Bytes()
	}
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	tests := []struct {
		name    string
		handler http.HandlerFunc
		extra   string // scrape config lines
		appErr  error
		reason  string // empty: the scrape succeeds
		wantErr string
	}{
		{
			name:  "timeout",
			extra: "scrape_timeout: 200ms",
			handler: func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-release:
				}
			},
			reason: reasonTimeout, wantErr: "scrape timed out after 200ms",
		},
		{
			name:    "status 500",
			handler: func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) },
			reason:  reasonStatus, wantErr: "server returned HTTP status 500 Internal Server Error",
		},
		{
			name:  "body over the limit with a length",
			extra: "body_size_limit: 1KiB",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", ctText)
				fmt.Fprint(w, gauges(200))
			},
			reason: reasonTooLarge, wantErr: "body larger than body_size_limit (1KiB)",
		},
		{
			name:  "body over the limit, chunked",
			extra: "body_size_limit: 1KiB",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", ctText)
				for i := 0; i < 10; i++ {
					fmt.Fprint(w, gauges(20))
					w.(http.Flusher).Flush()
				}
			},
			reason: reasonTooLarge, wantErr: "body larger than body_size_limit (1KiB)",
		},
		{
			name:  "gzip body over the limit once decompressed",
			extra: "body_size_limit: 4KiB",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", ctText)
				w.Header().Set("Content-Encoding", "gzip")
				_, _ = w.Write(gz(gauges(10) + "#" + strings.Repeat("x", 1<<20) + "\n"))
			},
			reason: reasonTooLarge, wantErr: "body larger than body_size_limit (4KiB)",
		},
		{
			name:    "body of exactly the limit",
			extra:   "body_size_limit: 1KiB",
			handler: fixedBody(ctText, exactly(1024)).ServeHTTP,
		},
		{
			name:  "gzip body within the limit",
			extra: "body_size_limit: 1KiB",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", ctText)
				w.Header().Set("Content-Encoding", "gzip")
				_, _ = w.Write(gz(gauges(3)))
			},
		},
		{
			name: "corrupt gzip",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Encoding", "gzip")
				fmt.Fprint(w, "not gzip")
			},
			reason: reasonRead, wantErr: "gzip: ",
		},
		{
			name:    "unsupported content type",
			handler: fixedBody("application/json", `{"up": 1}`).ServeHTTP,
			reason:  reasonContentType, wantErr: `scrape: unsupported content type "application/json"`,
		},
		{
			name:    "invalid text",
			handler: fixedBody(ctText, gauges(3)+"g{i=\"x\" 1\n").ServeHTTP,
			reason:  reasonParse, wantErr: "parse text/plain: ",
		},
		{
			name:    "appender refuses",
			handler: fixedBody(ctText, gauges(3)).ServeHTTP,
			appErr:  errors.New("store full"),
			reason:  reasonAppend, wantErr: "append: store full",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			t.Cleanup(srv.Close)
			rec := &recorder{err: tt.appErr}
			extra := ""
			if tt.extra != "" {
				extra = "    " + tt.extra + "\n"
			}
			m, _ := newManager(t, rec, fmt.Sprintf(`
scrape_configs:
  - job_name: j
    scrape_interval: 1h
%s    static_configs: [{targets: [%s]}]
`, extra, hostOf(srv)))
			err := m.ScrapeNow(context.Background())
			st := m.Targets()[0]
			up := testutil.ToFloat64(m.metrics.up.WithLabelValues("j", hostOf(srv)))
			if tt.reason == "" {
				if err != nil || st.Health != HealthUp || up != 1 || len(rec.take()) == 0 {
					t.Fatalf("want a good scrape: error %v, status %+v, up %v", err, st, up)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %v, want it to contain %q", err, tt.wantErr)
			}
			if st.Health != HealthDown || !strings.Contains(st.LastError, tt.wantErr) || up != 0 {
				t.Errorf("status %+v, up %v; want down with %q", st, up, tt.wantErr)
			}
			if n := testutil.ToFloat64(m.metrics.errors.WithLabelValues("j", tt.reason)); n != 1 {
				t.Errorf("rollguard_scrape_errors_total{reason=%q} = %v, want 1", tt.reason, n)
			}
			if got := rec.take(); len(got) != 0 {
				t.Errorf("a failed scrape appended %d samples", len(got))
			}
			if tt.reason == reasonTimeout && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("timeout error %v is not a context.DeadlineExceeded", err)
			}
		})
	}
}

// Loops scrape on their own once Run starts, and every loop has returned
// when Run does.
func TestRunScrapesOnSchedule(t *testing.T) {
	srv := httptest.NewServer(fixedBody(ctText, "g 1\n"))
	t.Cleanup(srv.Close)
	rec := &recorder{}
	m, _ := newManager(t, rec, fmt.Sprintf(`
scrape_configs:
  - job_name: fast
    scrape_interval: 100ms
    static_configs: [{targets: [%s]}]
`, hostOf(srv)))
	loops := m.loops()
	if st := m.Targets(); len(st) != 1 || st[0].Health != HealthUnknown {
		t.Fatalf("before Run: %+v", st)
	}
	cancel := runManager(t, m)
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := len(find(rec.take(), "g")); n < 1 {
			return errors.New("no scheduled scrape yet")
		}
		if st := m.Targets()[0]; st.Health != HealthUp {
			return fmt.Errorf("target %+v", st)
		}
		return nil
	})
	cancel()
	for _, l := range loops {
		if !isDone(l.done) {
			t.Errorf("loop %s still running after Run returned", l.t.key)
		}
	}
	m.Stop()
	m.Stop()
	var nilManager *Manager
	nilManager.Stop()
	if err := m.ApplyConfig(nil); !errors.Is(err, ErrStopped) {
		t.Errorf("ApplyConfig after Stop = %v, want ErrStopped", err)
	}
}

// ApplyConfig stops removed jobs (their loops have ended and their series
// are gone when it returns), restarts changed ones and leaves the others be.
func TestApplyConfig(t *testing.T) {
	a := httptest.NewServer(fixedBody(ctText, "g 1\n"))
	b := httptest.NewServer(fixedBody(ctText, "g 2\n"))
	t.Cleanup(a.Close)
	t.Cleanup(b.Close)
	doc := func(jobA string, withB bool) string {
		s := fmt.Sprintf("scrape_configs:\n  - job_name: a\n    scrape_interval: %s\n    static_configs: [{targets: [%s]}]\n", jobA, hostOf(a))
		if withB {
			s += fmt.Sprintf("  - job_name: b\n    scrape_interval: 1h\n    static_configs: [{targets: [%s]}]\n", hostOf(b))
		}
		return s
	}
	m, reg := newManager(t, &recorder{}, doc("1h", true))
	runManager(t, m)
	if err := m.ScrapeNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := map[string]*loop{}
	for _, l := range m.loops() {
		before[l.t.job] = l
	}
	if len(before) != 2 {
		t.Fatalf("loops = %v", before)
	}
	upSeries := func() int {
		n, err := testutil.GatherAndCount(reg, "rollguard_scrape_target_up")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := upSeries(); n != 2 {
		t.Fatalf("up series = %d, want 2", n)
	}

	// Removing b stops its loop before ApplyConfig returns.
	if err := m.ApplyConfig(scrapeConfigs(t, doc("1h", false))); err != nil {
		t.Fatal(err)
	}
	if !isDone(before["b"].done) {
		t.Error("loop of the removed job b still running")
	}
	if isDone(before["a"].done) {
		t.Error("loop of the unchanged job a was stopped")
	}
	if ls := m.loops(); len(ls) != 1 || ls[0] != before["a"] {
		t.Errorf("loops after removing b: %v", ls)
	}
	if n := upSeries(); n != 1 {
		t.Errorf("up series after removing b = %d, want 1", n)
	}

	// Changing a replaces its loop.
	if err := m.ApplyConfig(scrapeConfigs(t, doc("2h", false))); err != nil {
		t.Fatal(err)
	}
	if !isDone(before["a"].done) {
		t.Error("loop of the changed job a still running")
	}
	if ls := m.loops(); len(ls) != 1 || ls[0] == before["a"] || isDone(ls[0].done) {
		t.Errorf("loops after changing a: %v", ls)
	}

	// A job configured twice is refused and nothing changes.
	cur := m.loops()
	twice := append(scrapeConfigs(t, doc("2h", false)), scrapeConfigs(t, doc("2h", false))...)
	if err := m.ApplyConfig(twice); err == nil || !strings.Contains(err.Error(), `job "a" is configured twice`) {
		t.Errorf("ApplyConfig with a duplicate job = %v", err)
	}
	if ls := m.loops(); len(ls) != 1 || ls[0] != cur[0] || isDone(ls[0].done) {
		t.Error("a refused configuration changed the loops")
	}
	// So is a job whose client cannot be built.
	noCA := scrapeConfigs(t, doc("3h", false)+"    tls_config: {ca_file: "+filepath.Join(t.TempDir(), "missing.pem")+"}\n")
	if err := m.ApplyConfig(noCA); err == nil || !strings.Contains(err.Error(), `scrape job "a": `) {
		t.Errorf("ApplyConfig with a missing CA file = %v", err)
	}
	if ls := m.loops(); len(ls) != 1 || ls[0] != cur[0] || isDone(ls[0].done) {
		t.Error("a refused configuration changed the loops")
	}
}

// Prepare builds a configuration and changes nothing until its commit,
// which does what ApplyConfig does; a commit prepared against jobs that
// were changed since still applies its configuration.
func TestPrepare(t *testing.T) {
	srv := httptest.NewServer(fixedBody(ctText, "g 1\n"))
	t.Cleanup(srv.Close)
	doc := func(interval string) string {
		return fmt.Sprintf("scrape_configs:\n  - job_name: a\n    scrape_interval: %s\n    static_configs: [{targets: [%s]}]\n", interval, hostOf(srv))
	}
	m, _ := newManager(t, &recorder{}, doc("1h"))
	runManager(t, m)
	running := func() string {
		ls := m.loops()
		if len(ls) != 1 || isDone(ls[0].done) {
			t.Fatalf("loops = %v", ls)
		}
		return time.Duration(ls[0].p.cfg.ScrapeInterval).String()
	}

	commit, err := m.Prepare(scrapeConfigs(t, doc("2h")))
	if err != nil {
		t.Fatal(err)
	}
	if got := running(); got != "1h0m0s" {
		t.Errorf("interval after Prepare = %s, want the running 1h0m0s", got)
	}
	commit()
	if got := running(); got != "2h0m0s" {
		t.Errorf("interval after commit = %s, want 2h0m0s", got)
	}

	commit, err = m.Prepare(scrapeConfigs(t, doc("3h")))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.ApplyConfig(scrapeConfigs(t, doc("4h"))); err != nil {
		t.Fatal(err)
	}
	commit()
	if got := running(); got != "3h0m0s" {
		t.Errorf("interval after a stale commit = %s, want 3h0m0s", got)
	}

	noCA := scrapeConfigs(t, doc("5h")+"    tls_config: {ca_file: "+filepath.Join(t.TempDir(), "missing.pem")+"}\n")
	if _, err := m.Prepare(noCA); err == nil || !strings.Contains(err.Error(), `scrape job "a": `) {
		t.Errorf("Prepare with a missing CA file = %v", err)
	}
	if got := running(); got != "3h0m0s" {
		t.Errorf("interval after a refused Prepare = %s, want 3h0m0s", got)
	}
}

// file_sd: a target file's targets appear, follow its rewrites, survive an
// invalid rewrite and leave with the file.
func TestFileSD(t *testing.T) {
	srvA := httptest.NewServer(fixedBody(ctText, "g 1\n"))
	srvB := httptest.NewServer(fixedBody(ctText, "g 2\n"))
	t.Cleanup(srvA.Close)
	t.Cleanup(srvB.Close)
	dir := t.TempDir()
	jsonFile := filepath.Join(dir, "targets.json")
	write := func(path, content string) {
		t.Helper()
		// Write and rename, as configuration tools do, so no read sees half a file.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(jsonFile, fmt.Sprintf(`[{"targets": [%q], "labels": {"version": "v1"}}]`, hostOf(srvA)))
	m, _ := newManager(t, &recorder{}, fmt.Sprintf(`
scrape_configs:
  - job_name: filed
    scrape_interval: 1h
    file_sd_configs:
      - files: [%s/*.json, %s/*.yml]
        refresh_interval: 10ms
`, dir, dir))
	type tgt struct{ instance, version string }
	targets := func() []tgt {
		var out []tgt
		for _, s := range m.Targets() {
			out = append(out, tgt{s.Instance, s.Labels["version"]})
		}
		return out
	}
	waitTargets := func(want ...tgt) {
		t.Helper()
		checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
			if got := targets(); fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Errorf("targets %v, want %v", got, want)
			}
			return nil
		})
	}
	// The first read happens in ApplyConfig: the target is there at once.
	if got := targets(); len(got) != 1 || got[0] != (tgt{hostOf(srvA), "v1"}) {
		t.Fatalf("targets after ApplyConfig = %v", got)
	}
	runManager(t, m)

	write(jsonFile, fmt.Sprintf(`[{"targets": [%q], "labels": {"version": "v2"}}]`, hostOf(srvB)))
	waitTargets(tgt{hostOf(srvB), "v2"})

	write(filepath.Join(dir, "more.yml"), fmt.Sprintf("- targets: [%q]\n  labels: {version: v3}\n", hostOf(srvA)))
	want := []tgt{{hostOf(srvA), "v3"}, {hostOf(srvB), "v2"}}
	if hostOf(srvB) < hostOf(srvA) {
		want[0], want[1] = want[1], want[0]
	}
	waitTargets(want...)

	write(jsonFile, `[{"targets": ["no-port"]}]`)
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := testutil.ToFloat64(m.metrics.sdErrors.WithLabelValues("filed")); n == 0 {
			return errors.New("invalid file not noticed")
		}
		return nil
	})
	if got := targets(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("an invalid rewrite changed the targets to %v", got)
	}

	if err := os.Remove(jsonFile); err != nil {
		t.Fatal(err)
	}
	waitTargets(tgt{hostOf(srvA), "v3"})
	if err := m.ScrapeNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := m.Targets()[0]; st.Health != HealthUp || st.Job != "filed" {
		t.Errorf("file target %+v", st)
	}
}

func TestReadTargetFile(t *testing.T) {
	tests := []struct {
		name, file, content string
		want                string // fmt of the groups, or the error's text
	}{
		{"json", "t.json", `[{"targets": ["a:1", "b:2"], "labels": {"env": "prod"}}, {"targets": ["c:3"]}]`, "[{[a:1 b:2] map[env:prod]} {[c:3] map[]}]"},
		{"yaml", "t.yaml", "- targets: [a:1]\n  labels: {__metrics_path__: /m}\n", "[{[a:1] map[__metrics_path__:/m]}]"},
		{"empty yaml", "t.yml", "", "[]"},
		{"unknown key", "t.json", `[{"targets": ["a:1"], "label": {}}]`, `decode JSON: json: unknown field "label"`},
		{"unknown yaml key", "t.yaml", "- target: [a:1]\n", "decode YAML: yaml: unmarshal errors:\n  line 1: field target not found in type configs.TargetGroup"},
		{"no port", "t.json", `[{"targets": ["a:1"]}, {"targets": ["b"]}]`, `[1].targets[0]: "b" must be host:port`},
		{"url", "t.json", `[{"targets": ["http://a:1/metrics"]}]`, `[0].targets[0]: "http://a:1/metrics" must be host:port, without a scheme, path or spaces`},
		{"reserved label", "t.json", `[{"targets": ["a:1"], "labels": {"__address__": "x"}}]`, `[0].labels.__address__: label names starting with "__" are reserved (only __scheme__ and __metrics_path__ may be set)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			groups, err := readTargetFile(writeFile(t, tt.file, tt.content))
			got := fmt.Sprint(groups)
			if err != nil {
				got = err.Error()
			}
			if groups == nil && err == nil {
				got = "[]"
			}
			if got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// Target labels: job and instance default from the job and the address, a
// group may override them and set the scheme and path of its targets.
func TestNewTarget(t *testing.T) {
	sc := scrapeConfigs(t, "scrape_configs:\n  - job_name: j\n    params: {format: [prometheus]}\n")[0]
	tests := []struct {
		name   string
		labels map[string]string
		url    string
		ls     string
	}{
		{"defaults", nil, "http://a:1/metrics?format=prometheus", `{instance="a:1",job="j"}`},
		{"overrides", map[string]string{"job": "other", "instance": "pod-1", "__scheme__": "https", "__metrics_path__": "/m", "zone": "z", "empty": ""},
			"https://a:1/m?format=prometheus", `{instance="pod-1",job="other",zone="z"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := newTarget(sc, "a:1", tt.labels)
			if tg.url != tt.url || tg.labels.String() != tt.ls {
				t.Errorf("url %s labels %s, want %s %s", tg.url, tg.labels, tt.url, tt.ls)
			}
		})
	}
}
