package web

import (
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	"github.com/rollguard/rollguard/configs"
)

// Authenticator checks the Authorization header of requests to one
// listener. Its credentials are read from files when built; Update swaps
// them on reload. A nil configuration lets every request through.
type Authenticator struct {
	creds atomic.Pointer[credentials]
}

type credentials struct {
	scheme string // "Bearer" (or another type), "Basic", or "" for none
	secret string // the token, or "user:password"
}

// NewAuthenticator builds an authenticator for c.
func NewAuthenticator(c configs.ServerConfig) (*Authenticator, error) {
	a := &Authenticator{}
	return a, a.Update(c)
}

// Update replaces the credentials; on error the old ones stay.
func (a *Authenticator) Update(c configs.ServerConfig) error {
	commit, err := a.Prepare(c)
	if err != nil {
		return err
	}
	commit()
	return nil
}

// Prepare reads the credentials of c (their files too) without changing
// a, so that a reload can check every component before it changes any;
// commit puts them in force.
func (a *Authenticator) Prepare(c configs.ServerConfig) (commit func(), err error) {
	cr := &credentials{}
	switch {
	case c.Authorization != nil:
		secret, err := secretOrFile(string(c.Authorization.Credentials), c.Authorization.CredentialsFile)
		if err != nil {
			return nil, fmt.Errorf("authorization: %w", err)
		}
		cr.scheme, cr.secret = c.Authorization.Type, secret
		if cr.scheme == "" {
			cr.scheme = "Bearer"
		}
	case c.BasicAuth != nil:
		user, err := secretOrFile(c.BasicAuth.Username, c.BasicAuth.UsernameFile)
		if err != nil {
			return nil, fmt.Errorf("basic_auth: %w", err)
		}
		pass, err := secretOrFile(string(c.BasicAuth.Password), c.BasicAuth.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("basic_auth: %w", err)
		}
		cr.scheme, cr.secret = "Basic", user+":"+pass
	}
	return func() { a.creds.Store(cr) }, nil
}

func secretOrFile(inline, file string) (string, error) {
	if file == "" {
		return inline, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", file)
	}
	return s, nil
}

// ErrUnauthorized is returned for a request without valid credentials.
var ErrUnauthorized = errors.New("web: unauthorized")

// Check verifies an Authorization header value in constant time.
func (a *Authenticator) Check(header string) error {
	cr := a.creds.Load()
	if cr == nil || cr.scheme == "" {
		return nil
	}
	scheme, value, _ := strings.Cut(header, " ")
	if !strings.EqualFold(scheme, cr.scheme) {
		return ErrUnauthorized
	}
	if cr.scheme == "Basic" {
		u, p, ok := (&http.Request{Header: http.Header{"Authorization": {header}}}).BasicAuth()
		if !ok {
			return ErrUnauthorized
		}
		value = u + ":" + p
	}
	if subtle.ConstantTimeCompare([]byte(value), []byte(cr.secret)) != 1 {
		return ErrUnauthorized
	}
	return nil
}

// Wrap requires valid credentials on every path but the exempt ones.
func (a *Authenticator) Wrap(next http.Handler, exempt ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, p := range exempt {
			if r.URL.Path == p {
				next.ServeHTTP(w, r)
				return
			}
		}
		if err := a.Check(r.Header.Get("Authorization")); err != nil {
			if cr := a.creds.Load(); cr != nil && cr.scheme == "Basic" {
				w.Header().Set("WWW-Authenticate", `Basic realm="rollguard"`)
			}
			writeError(w, http.StatusUnauthorized, "missing or invalid credentials in the Authorization header")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ServerTLS builds a listener's TLS configuration, or nil without TLS.
func ServerTLS(c *configs.ServerTLSConfig) (*tls.Config, error) {
	if c == nil {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: no certificate in %s", c.ClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	switch c.ClientAuth {
	case "none":
		tc.ClientAuth = tls.NoClientCert
	case "request":
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	case "require_and_verify":
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}
