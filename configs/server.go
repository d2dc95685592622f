package configs

import (
	"fmt"
	"strings"

	commoncfg "github.com/prometheus/common/config"
)

// ServerConfig secures one listener: TLS (and mTLS) and, optionally, a bearer
// token or basic auth that every request must carry. Credentials come from
// files (read at start and on reload) or inline Secrets, which are redacted
// wherever the configuration is printed.
type ServerConfig struct {
	TLS           *ServerTLSConfig         `yaml:"tls"`
	Authorization *commoncfg.Authorization `yaml:"authorization"`
	BasicAuth     *commoncfg.BasicAuth     `yaml:"basic_auth"`
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
