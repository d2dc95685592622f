package configs

import (
	"strings"
	"testing"
	"time"

	commoncfg "github.com/prometheus/common/config"
)

// serverGuards makes a listener block a whole, valid configuration.
const serverGuards = "guards:\n  - name: checkout\n    service: checkout\n    signals:\n      - name: errors\n"

// TestServerBounds: the listener bounds of otlp: and web: parse, zero
// means the default, and a negative bound is refused with its field named.
func TestServerBounds(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, err string
		web             ServerConfig // as WithDefaults serves it
	}{
		{name: "defaults", yaml: "web: {}\n", web: ServerConfig{ReadTimeout: Duration(30 * time.Second),
			WriteTimeout: Duration(time.Minute), IdleTimeout: Duration(2 * time.Minute), MaxConnections: 1024}},
		{name: "set", yaml: "web:\n  read_timeout: 5s\n  write_timeout: 2m\n  idle_timeout: 30s\n  max_connections: 64\n",
			web: ServerConfig{ReadTimeout: Duration(5 * time.Second), WriteTimeout: Duration(2 * time.Minute),
				IdleTimeout: Duration(30 * time.Second), MaxConnections: 64}},
		{name: "zero is the default", yaml: "web:\n  read_timeout: 0s\n  max_connections: 0\n", web: ServerConfig{ReadTimeout: Duration(30 * time.Second),
			WriteTimeout: Duration(time.Minute), IdleTimeout: Duration(2 * time.Minute), MaxConnections: 1024}},
		{name: "negative connections", yaml: "otlp:\n  max_connections: -1\n",
			err: "otlp.max_connections: -1 is negative: use a positive number, or 0 for the default (1024) (line 2)"},
		{name: "negative timeout", yaml: "web:\n  read_timeout: -1s\n",
			err: `web.read_timeout: invalid duration "-1s": use a number and a unit, like 30s or 5m (line 2)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.yaml + serverGuards))
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Web.WithDefaults(); got != tc.web {
				t.Errorf("web bounds %+v, want %+v", got, tc.web)
			}
		})
	}
}

// TestServerNegativeDuration: a negative timeout set in Go (YAML cannot
// spell one) is refused too, with the field named.
func TestServerNegativeDuration(t *testing.T) {
	errs := ServerConfig{WriteTimeout: Duration(-time.Second)}.validate("web")
	if len(errs) != 1 || errs[0].path != "web.write_timeout" || !strings.Contains(errs[0].msg, "negative") {
		t.Fatalf("errors %v, want one naming web.write_timeout as negative", errs)
	}
}

// TestServerAuthenticates: a token, basic auth or a required client
// certificate authenticates a listener; TLS alone, or a client
// certificate only requested, does not.
func TestServerAuthenticates(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    ServerConfig
		want bool
	}{
		{"nothing", ServerConfig{}, false},
		{"tls only", ServerConfig{TLS: &ServerTLSConfig{CertFile: "c", KeyFile: "k"}}, false},
		{"client certificate requested", ServerConfig{TLS: &ServerTLSConfig{ClientCAFile: "ca", ClientAuth: "request"}}, false},
		{"client ca, so required", ServerConfig{TLS: &ServerTLSConfig{ClientCAFile: "ca"}}, true},
		{"client certificate required", ServerConfig{TLS: &ServerTLSConfig{ClientCAFile: "ca", ClientAuth: "require_and_verify"}}, true},
		{"bearer", ServerConfig{Authorization: &commoncfg.Authorization{Credentials: "t"}}, true},
		{"basic", ServerConfig{BasicAuth: &commoncfg.BasicAuth{Username: "u", Password: "p"}}, true},
	} {
		if got := tc.s.Authenticates(); got != tc.want {
			t.Errorf("%s: Authenticates() = %v, want %v", tc.name, got, tc.want)
		}
	}
}
