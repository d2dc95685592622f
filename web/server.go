package web

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/net/netutil"

	"github.com/rollguard/rollguard/configs"
)

// maxHeaderWait bounds reading a request's headers, within ReadTimeout.
const maxHeaderWait = 10 * time.Second

// Listen binds addr for a listener configured by c: it accepts at most
// c.MaxConnections connections at once (default
// configs.DefaultMaxConnections); a client beyond them waits in the
// kernel's backlog until one closes, so that no number of clients can
// exhaust rollguard's file descriptors. Every listener rollguard serves,
// HTTP or gRPC, is bound here. The listener is a *Listener.
func Listen(addr string, c configs.ServerConfig) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	max := c.WithDefaults().MaxConnections
	return &Listener{Listener: netutil.LimitListener(ln, max), max: max}, nil
}

// Listener is a bound listener with its connection cap; it counts the
// connections it holds, so that a listener at its cap can be seen.
type Listener struct {
	net.Listener
	max  int
	open atomic.Int64
}

// Accept waits for a connection, and for a free place under the cap.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.open.Add(1)
	return &countedConn{Conn: c, l: l}, nil
}

// Open is the number of connections held now.
func (l *Listener) Open() int { return int(l.open.Load()) }

// Max is the most connections the listener holds at once.
func (l *Listener) Max() int { return l.max }

type countedConn struct {
	net.Conn
	l    *Listener
	once sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}

// NewServer builds the HTTP server of a listener configured by c, with its
// timeouts (zero ones at their defaults): a client that trickles its
// request, reads its answer slowly or idles on a kept-alive connection is
// cut off rather than held. tc is the listener's TLS, nil without. What
// the server itself has to say (a failed TLS handshake, a panic in a
// handler) goes to log as a warning. Every HTTP listener rollguard serves
// is built here, its listener by Listen.
func NewServer(c configs.ServerConfig, h http.Handler, tc *tls.Config, log hclog.Logger) *http.Server {
	c = c.WithDefaults()
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &http.Server{
		ErrorLog:          log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Warn}),
		Handler:           h,
		TLSConfig:         tc,
		ReadHeaderTimeout: min(maxHeaderWait, time.Duration(c.ReadTimeout)),
		ReadTimeout:       time.Duration(c.ReadTimeout),
		WriteTimeout:      time.Duration(c.WriteTimeout),
		IdleTimeout:       time.Duration(c.IdleTimeout),
	}
}
