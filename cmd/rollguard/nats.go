package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	commoncfg "github.com/prometheus/common/config"

	"github.com/rollguard/rollguard/configs"
)

// startEmbeddedNATS runs a NATS server with JetStream in this process, its
// store under storagePath. It is what `rollguard run` uses when no URL is set.
func startEmbeddedNATS(c configs.NATSConfig, storagePath string, log hclog.Logger) (*server.Server, error) {
	opts := &server.Options{
		ServerName: "rollguard-embedded",
		Host:       c.Embedded.Host,
		Port:       c.Embedded.Port,
		JetStream:  true,
		StoreDir:   filepath.Join(storagePath, "nats"),
		NoSigs:     true,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	ns.SetLoggerV2(natsLogger{log}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready after 30s (is %s:%d free?)", c.Embedded.Host, c.Embedded.Port)
	}
	return ns, nil
}

// connectNATS connects to url with the configured credentials and TLS. The
// embedded server takes the same path.
func connectNATS(url string, c configs.NATSConfig, log hclog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("rollguard"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}
	switch {
	case c.CredentialsFile != "":
		opts = append(opts, nats.UserCredentials(c.CredentialsFile))
	case c.Token != "":
		opts = append(opts, nats.Token(string(c.Token)))
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, string(c.Password)))
	}
	if c.TLS != (commoncfg.TLSConfig{}) {
		tc, err := commoncfg.NewTLSConfig(&c.TLS)
		if err != nil {
			return nil, fmt.Errorf("nats tls: %w", err)
		}
		opts = append(opts, nats.Secure(tc))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", url, err)
	}
	return nc, nil
}

// natsLogger sends the embedded server's log lines to hclog.
type natsLogger struct{ l hclog.Logger }

func (n natsLogger) Noticef(format string, v ...any) { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n natsLogger) Warnf(format string, v ...any)   { n.l.Warn(fmt.Sprintf(format, v...)) }
func (n natsLogger) Fatalf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n natsLogger) Errorf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n natsLogger) Debugf(format string, v ...any)  { n.l.Trace(fmt.Sprintf(format, v...)) }
func (n natsLogger) Tracef(format string, v ...any)  { n.l.Trace(fmt.Sprintf(format, v...)) }
