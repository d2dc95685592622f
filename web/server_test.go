package web_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/internal/poll"
	"github.com/rollguard/rollguard/web"
)

// serve runs h on a listener bound and bounded by c, as the daemon does.
func serve(t *testing.T, c configs.ServerConfig, h http.Handler) *web.Listener {
	t.Helper()
	ln, err := web.Listen("127.0.0.1:0", c)
	if err != nil {
		t.Fatal(err)
	}
	srv := web.NewServer(c, h, nil, hclog.New(&hclog.LoggerOptions{Output: io.Discard}))
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return ln.(*web.Listener)
}

func TestNewServerDefaults(t *testing.T) {
	srv := web.NewServer(configs.ServerConfig{}, http.NotFoundHandler(), nil, nil)
	if srv.ReadTimeout != 30*time.Second || srv.WriteTimeout != time.Minute || srv.IdleTimeout != 2*time.Minute || srv.ReadHeaderTimeout != 10*time.Second {
		t.Errorf("timeouts read %s (headers %s), write %s, idle %s; want 30s (10s), 1m, 2m", srv.ReadTimeout, srv.ReadHeaderTimeout, srv.WriteTimeout, srv.IdleTimeout)
	}
}

// TestReadTimeout: a client that trickles its body is cut off once
// read_timeout has passed since its request began, however steadily it
// sends; a request that arrives whole is served (healthy twin).
func TestReadTimeout(t *testing.T) {
	readErr := make(chan error, 2)
	addr := serve(t, configs.ServerConfig{ReadTimeout: configs.Duration(time.Second)},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			readErr <- err
			if err != nil {
				http.Error(w, "body too slow", http.StatusRequestTimeout)
				return
			}
			_, _ = fmt.Fprintf(w, "read %d bytes", len(b))
		})).Addr().String()

	resp, err := http.Post("http://"+addr+"/", "text/plain", strings.NewReader("a whole body"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "read 12 bytes" || <-readErr != nil {
		t.Fatalf("healthy request: %d %q", resp.StatusCode, b)
	}

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// One byte every 20 ms of a 100 kB body: about half an hour to send.
	if _, err := io.WriteString(conn, "POST / HTTP/1.1\r\nHost: rollguard\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := conn.Write([]byte("x")); err != nil {
					return
				}
			}
		}
	}()
	// The server must end the exchange: far sooner than the trickle would,
	// and well before this deadline, which only keeps a failing test short.
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server still held a trickling request after 20s")
	}
	if err := <-readErr; !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("the handler's body read ended with %v, want a timeout", err)
	}
}

// TestMaxConnections: with max_connections 2, two requests are served at
// once (healthy twin), a third waits while both hold their connections,
// and is served as soon as one closes.
func TestMaxConnections(t *testing.T) {
	var entered atomic.Int32
	release := make(chan struct{})
	ln := serve(t, configs.ServerConfig{MaxConnections: 2}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered.Add(1)
		<-release
		_, _ = io.WriteString(w, "served")
	}))
	addr := ln.Addr().String()
	type result struct {
		code int
		err  error
	}
	results := make(chan result, 3)
	get := func() {
		// A connection of its own, closed after the answer.
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get("http://" + addr + "/")
		if err != nil {
			results <- result{err: err}
			return
		}
		resp.Body.Close()
		results <- result{code: resp.StatusCode}
	}
	enteredIs := func(n int32) func() error {
		return func() error {
			if got := entered.Load(); got != n {
				return fmt.Errorf("%d requests in the handler, want %d", got, n)
			}
			return nil
		}
	}
	go get()
	go get()
	poll.Until(t, 10*time.Second, enteredIs(2))
	if ln.Open() != 2 || ln.Max() != 2 {
		t.Errorf("listener holds %d of %d connections, want 2 of 2", ln.Open(), ln.Max())
	}
	go get()
	poll.Holds(t, 300*time.Millisecond, enteredIs(2))
	release <- struct{}{}
	poll.Until(t, 10*time.Second, enteredIs(3))
	close(release)
	for range 3 {
		if r := <-results; r.err != nil || r.code != http.StatusOK {
			t.Errorf("request: %d %v", r.code, r.err)
		}
	}
	poll.Until(t, 10*time.Second, func() error {
		if n := ln.Open(); n != 0 {
			return fmt.Errorf("listener holds %d connections after every client closed, want 0", n)
		}
		return nil
	})
}

// syncBuffer is a log output that the server's goroutines and the test
// share.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServerErrorLog: what net/http says about a connection (here a
// client that speaks plain text to a TLS listener) reaches rollguard's
// log as a warning, not the process's stderr.
func TestServerErrorLog(t *testing.T) {
	certs := httptest.NewTLSServer(http.NotFoundHandler()) // for its certificate
	certs.Close()
	var out syncBuffer
	ln, err := web.Listen("127.0.0.1:0", configs.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	srv := web.NewServer(configs.ServerConfig{}, http.NotFoundHandler(), &tls.Config{Certificates: certs.TLS.Certificates},
		hclog.New(&hclog.LoggerOptions{Name: "web", Output: &out, DisableTime: true}))
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close(); <-done })

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: rollguard\r\n\r\n")
	_, _ = io.ReadAll(conn)
	conn.Close()
	poll.Until(t, 10*time.Second, func() error {
		if s := out.String(); !strings.Contains(s, "[WARN]  web: http: TLS handshake error from ") {
			return fmt.Errorf("log %q has no warning of the failed handshake", s)
		}
		return nil
	})
}
