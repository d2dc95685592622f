package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/web"
)

// Start-up waits for NATS instead of giving up on it: replicas and
// sidecars started at once on a fresh cluster (a StatefulSet with
// podManagementPolicy: Parallel) race to create the same streams and
// buckets, and JetStream lets some of those creations time out while its
// meta leader settles; a server that comes up after rollguard is refused
// at first. Each creation is tried again, from startupFirstWait doubling
// to startupMaxWait with jitter, until it succeeds or the process is
// stopped.
const (
	startupFirstWait = 250 * time.Millisecond
	startupMaxWait   = 5 * time.Second
	// startupAttempt bounds one attempt (JetStream's own default API
	// timeout): a creation racing another is often never answered although
	// it took effect, and sending it again is answered at once.
	startupAttempt = 5 * time.Second
)

// errGiveUp marks an error that retrying cannot cure (wrong credentials,
// a certificate not trusted): start-up fails with it at once.
type errGiveUp struct{ err error }

func (e errGiveUp) Error() string { return e.err.Error() }
func (e errGiveUp) Unwrap() error { return e.err }

// untilReady calls create until it succeeds, fails with errGiveUp, or ctx
// ends, logging each failed attempt; what names it in the log.
func untilReady[T any](ctx context.Context, log hclog.Logger, what string, create func(context.Context) (T, error)) (T, error) {
	wait := startupFirstWait
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, startupAttempt)
		v, err := create(actx)
		cancel()
		var giveUp errGiveUp
		switch {
		case err == nil:
			if attempt > 1 {
				log.Info("ready after retries", "waited_for", what, "attempts", attempt)
			}
			return v, nil
		case errors.As(err, &giveUp):
			return v, giveUp.err
		case ctx.Err() != nil:
			return v, fmt.Errorf("stopped while waiting for %s: %w", what, err)
		}
		jittered := wait/2 + rand.N(wait/2+1)
		log.Warn("nats not ready; will retry", "waiting_for", what, "attempt", attempt, "retry_in", jittered.Round(time.Millisecond), "error", err)
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("stopped while waiting for %s: %w", what, err)
		case <-time.After(jittered):
		}
		wait = min(2*wait, startupMaxWait)
	}
}

// connectNATSUntilReady connects to url, waiting for a server that cannot
// be reached yet; a server that refuses the credentials or whose
// certificate is not trusted fails start-up at once.
func connectNATSUntilReady(ctx context.Context, url string, c configs.NATSConfig, log hclog.Logger) (*nats.Conn, error) {
	return untilReady(ctx, log, "nats server "+url, func(context.Context) (*nats.Conn, error) {
		nc, err := connectNATS(url, c, log)
		var ne net.Error
		if err != nil && !errors.Is(err, nats.ErrNoServers) && !errors.As(err, &ne) {
			return nil, errGiveUp{err}
		}
		return nc, err
	})
}

// startupProbes answer on the web listener while start-up waits for NATS,
// so that a probe sees rollguard waiting rather than a closed port:
// /-/healthy is 200 (alive, and no restart would cure the wait), /-/ready
// and every other path 503 "waiting for NATS streams". Their own loop
// accepts the connections and hands them to the probes' server; stop
// ends it without closing the listener, which the web server serves next.
type startupProbes struct {
	ln      net.Listener
	srv     *http.Server
	conns   chan net.Conn
	stopped atomic.Bool
	looped  chan struct{} // closed when the accept loop has ended
	quit    chan struct{} // closed by stop once the loop has ended or is given up on
	served  chan struct{} // closed when the server has ended
}

// serveStartupProbes starts the probes on ln, over TLS where the web
// listener has it. Without a usable TLS configuration it answers nothing:
// start-up reports that error itself.
func serveStartupProbes(ln net.Listener, cfg *configs.Config, log hclog.Logger) *startupProbes {
	p := &startupProbes{ln: ln, conns: make(chan net.Conn), looped: make(chan struct{}), quit: make(chan struct{}), served: make(chan struct{})}
	tc, err := web.ServerTLS(cfg.Web.TLS)
	if err != nil {
		return p
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "rollguard is healthy.\n")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "rollguard is not ready: waiting for NATS streams", http.StatusServiceUnavailable)
	})
	p.srv = web.NewServer(cfg.Web.ServerConfig, mux, tc, log)
	go func() {
		defer close(p.looped)
		for {
			c, err := ln.Accept()
			if err != nil {
				return // the listener was closed: start-up failed
			}
			select {
			case p.conns <- c: // the probes serve even the one that woke a stop
			case <-p.quit:
				_ = c.Close()
				return
			}
			if p.stopped.Load() {
				return
			}
		}
	}()
	go func() {
		defer close(p.served)
		if tc != nil {
			_ = p.srv.ServeTLS(chanListener{p}, "", "")
			return
		}
		_ = p.srv.Serve(chanListener{p})
	}()
	return p
}

// stop ends the probes: their accept loop is woken by a connection of its
// own, in-flight probes are answered, and the listener is left open.
func (p *startupProbes) stop() {
	if p.srv == nil || p.stopped.Swap(true) {
		return
	}
	addr := p.ln.Addr().(*net.TCPAddr)
	if addr.IP.IsUnspecified() {
		addr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: addr.Port}
	}
	if c, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		_ = c.Close()
	}
	select {
	case <-p.looped:
	case <-time.After(5 * time.Second): // the loop is stuck in Accept; the web server takes over
	}
	close(p.quit)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.srv.Shutdown(ctx)
	<-p.served
}

// chanListener is the probes' server's side of their accept loop; closing
// it leaves the real listener open.
type chanListener struct{ p *startupProbes }

func (l chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.p.conns:
		return c, nil
	case <-l.p.quit:
		return nil, net.ErrClosed
	}
}
func (l chanListener) Close() error   { return nil }
func (l chanListener) Addr() net.Addr { return l.p.ln.Addr() }
