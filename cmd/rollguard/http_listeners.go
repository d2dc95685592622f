package main

import (
	"net"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/web"
)

// Ingest paths, as rollguard_ingest_unauthenticated labels them.
const (
	pathOTLPHTTP    = "otlp_http"
	pathOTLPGRPC    = "otlp_grpc"
	pathRemoteWrite = "remote_write"
)

// openIngest returns, for each ingest path cfg serves, whether it accepts
// telemetry without credentials. OTLP's two listeners share otlp:'s
// settings; remote write is served on the web listener, so web: secures it.
func openIngest(cfg *configs.Config) map[string]bool {
	open := map[string]bool{pathRemoteWrite: !cfg.Web.Authenticates()}
	if cfg.OTLP.HTTPListenAddress != "" {
		open[pathOTLPHTTP] = !cfg.OTLP.Authenticates()
	}
	if cfg.OTLP.GRPCListenAddress != "" {
		open[pathOTLPGRPC] = !cfg.OTLP.Authenticates()
	}
	return open
}

// watchListeners exports rollguard_ingest_unauthenticated and the
// listeners' connections, and checks the listeners of the configuration
// rollguard starts with.
func (d *daemon) watchListeners(cfg *configs.Config) {
	d.reg.MustRegister(newIngestAuthCollector(d.Config), &connectionsCollector{d: d})
	d.checkListeners(nil, cfg)
}

// checkListeners says, at start (old nil) and on each reload, what an
// operator may not expect of the listeners of cfg: an ingest path open
// while another requires credentials (a client refused on one path could
// send the same telemetry, or worse, on the other), and listener bounds
// that a reload does not change. It warns; it refuses nothing.
func (d *daemon) checkListeners(old, cfg *configs.Config) {
	var open, secured []string
	paths := openIngest(cfg)
	for _, p := range []string{pathOTLPHTTP, pathOTLPGRPC, pathRemoteWrite} {
		o, served := paths[p]
		switch {
		case !served:
		case o:
			open = append(open, p)
		default:
			secured = append(secured, p)
		}
	}
	if len(open) > 0 && len(secured) > 0 {
		fix := "set authorization or basic_auth under otlp: as well"
		if !cfg.Web.Authenticates() {
			fix = "set authorization or basic_auth under web: as well"
		}
		d.log.Warn("ingest path open: it accepts telemetry without credentials while another requires them, so anyone who reaches it can feed verdicts",
			"open", strings.Join(open, ","), "secured", strings.Join(secured, ","), "fix", fix)
	}
	if old != nil && (bounds(old.OTLP.ServerConfig) != bounds(cfg.OTLP.ServerConfig) || bounds(old.Web.ServerConfig) != bounds(cfg.Web.ServerConfig)) {
		d.log.Warn("listener timeouts and max_connections change only on restart")
	}
}

// bounds is the part of a listener's settings that is fixed when it binds.
func bounds(s configs.ServerConfig) [4]int64 {
	s = s.WithDefaults()
	return [4]int64{int64(s.ReadTimeout), int64(s.WriteTimeout), int64(s.IdleTimeout), int64(s.MaxConnections)}
}

// ingestAuthCollector exports rollguard_ingest_unauthenticated from the
// running configuration, so that a reload changes it with the credentials.
type ingestAuthCollector struct {
	cfg  func() *configs.Config
	desc *prometheus.Desc
}

func newIngestAuthCollector(cfg func() *configs.Config) *ingestAuthCollector {
	return &ingestAuthCollector{cfg: cfg, desc: prometheus.NewDesc("rollguard_ingest_unauthenticated",
		"1 for an ingest path (otlp_http, otlp_grpc, remote_write) that accepts telemetry without credentials, 0 for one that requires them.",
		[]string{"path"}, nil)}
}

func (c *ingestAuthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *ingestAuthCollector) Collect(ch chan<- prometheus.Metric) {
	for p, o := range openIngest(c.cfg()) {
		v := 0.0
		if o {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, p)
	}
}

var (
	connectionsDesc = prometheus.NewDesc("rollguard_listener_connections",
		"Connections a listener (web, otlp_http, otlp_grpc) holds now.", []string{"listener"}, nil)
	maxConnectionsDesc = prometheus.NewDesc("rollguard_listener_max_connections",
		"The listener's max_connections: at it, new clients wait until a connection closes.", []string{"listener"}, nil)
)

// connectionsCollector exports each bound listener's connections and cap,
// so that a listener held at its cap (by a flood or by slow clients) is
// seen rather than only felt.
type connectionsCollector struct{ d *daemon }

func (c *connectionsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- connectionsDesc
	ch <- maxConnectionsDesc
}

func (c *connectionsCollector) Collect(ch chan<- prometheus.Metric) {
	// The listeners are bound before any request can ask for metrics.
	for _, l := range []struct {
		name string
		ln   net.Listener
	}{{"web", c.d.webLn}, {pathOTLPHTTP, c.d.otlpLn}, {pathOTLPGRPC, c.d.grpcLn}} {
		if wl, ok := l.ln.(*web.Listener); ok {
			ch <- prometheus.MustNewConstMetric(connectionsDesc, prometheus.GaugeValue, float64(wl.Open()), l.name)
			ch <- prometheus.MustNewConstMetric(maxConnectionsDesc, prometheus.GaugeValue, float64(wl.Max()), l.name)
		}
	}
}
