package web

import (
	"crypto/tls"
	"net"
	"net/http"
	"time"

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
// HTTP or gRPC, is bound here.
func Listen(addr string, c configs.ServerConfig) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return netutil.LimitListener(ln, c.WithDefaults().MaxConnections), nil
}

// NewServer builds the HTTP server of a listener configured by c, with its
// timeouts (zero ones at their defaults): a client that trickles its
// request, reads its answer slowly or idles on a kept-alive connection is
// cut off rather than held. tc is the listener's TLS, nil without. Every
// HTTP listener rollguard serves is built here, its listener by Listen.
func NewServer(c configs.ServerConfig, h http.Handler, tc *tls.Config) *http.Server {
	c = c.WithDefaults()
	return &http.Server{
		Handler:           h,
		TLSConfig:         tc,
		ReadHeaderTimeout: min(maxHeaderWait, time.Duration(c.ReadTimeout)),
		ReadTimeout:       time.Duration(c.ReadTimeout),
		WriteTimeout:      time.Duration(c.WriteTimeout),
		IdleTimeout:       time.Duration(c.IdleTimeout),
	}
}
