package configs

import (
	"fmt"
	"strings"
	"time"

	commoncfg "github.com/prometheus/common/config"
)

// ServerConfig secures and bounds one listener: TLS (and mTLS), optionally
// a bearer token or basic auth that every request must carry, and the
// timeouts and connection cap that keep slow or numerous clients from
// holding it. Credentials come from files (read at start and on reload) or
// inline Secrets, which are redacted wherever the configuration is printed.
type ServerConfig struct {
	TLS           *ServerTLSConfig         `yaml:"tls"`
	Authorization *commoncfg.Authorization `yaml:"authorization"`
	BasicAuth     *commoncfg.BasicAuth     `yaml:"basic_auth"`

	// ReadTimeout bounds reading one whole request, headers and body: a
	// client that trickles its body is cut off. 0: DefaultReadTimeout.
	ReadTimeout Duration `yaml:"read_timeout"`
	// WriteTimeout bounds handling a request and writing its answer
	// (a CPU profile must be shorter). 0: DefaultWriteTimeout.
	WriteTimeout Duration `yaml:"write_timeout"`
	// IdleTimeout closes a kept-alive connection that sends no new
	// request. 0: DefaultIdleTimeout.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxConnections caps the connections served at once; a client beyond
	// it waits (in the kernel's backlog) until one closes. It bounds the
	// file descriptors and memory clients can make rollguard hold.
	// 0: DefaultMaxConnections.
	MaxConnections int `yaml:"max_connections"`
}

// The bounds of a listener whose ServerConfig leaves them at zero. No
// endpoint answers for longer than DefaultWriteTimeout: the longest is a
// 30 s CPU profile.
const (
	DefaultReadTimeout    = 30 * time.Second
	DefaultWriteTimeout   = time.Minute
	DefaultIdleTimeout    = 2 * time.Minute
	DefaultMaxConnections = 1024
)

// WithDefaults returns s with each zero bound set to its default, as the
// listener serves it.
func (s ServerConfig) WithDefaults() ServerConfig {
	if s.ReadTimeout == 0 {
		s.ReadTimeout = Duration(DefaultReadTimeout)
	}
	if s.WriteTimeout == 0 {
		s.WriteTimeout = Duration(DefaultWriteTimeout)
	}
	if s.IdleTimeout == 0 {
		s.IdleTimeout = Duration(DefaultIdleTimeout)
	}
	if s.MaxConnections == 0 {
		s.MaxConnections = DefaultMaxConnections
	}
	return s
}

// Authenticates reports whether every request to the listener must prove
// who sent it: a bearer token, basic auth, or a verified client
// certificate.
func (s ServerConfig) Authenticates() bool {
	if s.Authorization != nil || s.BasicAuth != nil {
		return true
	}
	if t := s.TLS; t != nil {
		return t.ClientAuth == "require_and_verify" || (t.ClientAuth == "" && t.ClientCAFile != "")
	}
	return false
}

// ServerTLSConfig is a listener's certificate and, for mTLS, the CA that
// client certificates must chain to.
type ServerTLSConfig struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
	// ClientAuth: none (default), request, require_and_verify. With a
	// client_ca_file the default is require_and_verify.
	ClientAuth string `yaml:"client_auth"`
}

func (s ServerConfig) validate(path string) []fieldError {
	var errs []fieldError
	if s.TLS != nil {
		if s.TLS.CertFile == "" || s.TLS.KeyFile == "" {
			errs = append(errs, fieldError{path + ".tls", "cert_file and key_file are both required"})
		}
		switch s.TLS.ClientAuth {
		case "", "none", "request", "require_and_verify":
		default:
			errs = append(errs, fieldError{path + ".tls.client_auth", fmt.Sprintf("%q must be one of none, request, require_and_verify", s.TLS.ClientAuth)})
		}
		if s.TLS.ClientAuth == "require_and_verify" && s.TLS.ClientCAFile == "" {
			errs = append(errs, fieldError{path + ".tls.client_ca_file", "is required with client_auth require_and_verify"})
		}
	}
	if s.Authorization != nil && s.BasicAuth != nil {
		errs = append(errs, fieldError{path + ".authorization", "set either authorization or basic_auth, not both"})
	}
	if a := s.Authorization; a != nil {
		if a.Type == "" {
			a.Type = "Bearer"
		}
		if strings.EqualFold(a.Type, "basic") {
			errs = append(errs, fieldError{path + ".authorization.type", "use basic_auth for Basic"})
		}
		if (a.Credentials == "") == (a.CredentialsFile == "") {
			errs = append(errs, fieldError{path + ".authorization", "set exactly one of credentials and credentials_file"})
		}
	}
	for _, d := range []struct {
		field string
		value Duration
	}{{"read_timeout", s.ReadTimeout}, {"write_timeout", s.WriteTimeout}, {"idle_timeout", s.IdleTimeout}} {
		if d.value < 0 {
			errs = append(errs, fieldError{path + "." + d.field, "is negative: use a positive duration, or 0 for the default"})
		}
	}
	if s.MaxConnections < 0 {
		errs = append(errs, fieldError{path + ".max_connections", fmt.Sprintf("%d is negative: use a positive number, or 0 for the default (%d)", s.MaxConnections, DefaultMaxConnections)})
	}
	if b := s.BasicAuth; b != nil {
		if b.Username == "" && b.UsernameFile == "" {
			errs = append(errs, fieldError{path + ".basic_auth.username", "is empty"})
		}
		if (b.Password == "") == (b.PasswordFile == "") {
			errs = append(errs, fieldError{path + ".basic_auth", "set exactly one of password and password_file"})
		}
	}
	return errs
}
