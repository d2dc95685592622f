package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc/credentials"
)

// TestListenerAuth: OTLP over mTLS with a bearer token (HTTP and gRPC, as
// the OpenTelemetry SDK sends it), and the web listener behind basic auth
// with the probes left open.
func TestListenerAuth(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.der}), 0o600); err != nil {
		t.Fatal(err)
	}
	serverCert, serverKey := writePair(t, dir, "server", ca.issue(t, x509.ExtKeyUsageServerAuth))
	clientCert := ca.issue(t, x509.ExtKeyUsageClientAuth)
	tokenFile, passFile := filepath.Join(dir, "token"), filepath.Join(dir, "password")
	_ = os.WriteFile(tokenFile, []byte("s3cret-token\n"), 0o600)
	_ = os.WriteFile(passFile, []byte("hunter2\n"), 0o600)

	cfg := strings.Replace(testConfig, "otlp:\n", "otlp:\n  tls:\n    cert_file: "+serverCert+"\n    key_file: "+serverKey+
		"\n    client_ca_file: "+caFile+"\n  authorization:\n    credentials_file: "+tokenFile+"\n", 1)
	cfg = strings.Replace(cfg, "guards:\n", "web:\n  basic_auth:\n    username: ops\n    password_file: "+passFile+"\nguards:\n", 1)
	td := startDaemon(t, cfg)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.der}))
	withCert := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{clientCert}}
	noCert := &tls.Config{RootCAs: pool}
	url := strings.Replace(td.otlp, "http://", "https://", 1)
	grpcAddr := td.grpcLn.Addr().String()
	good := map[string]string{"Authorization": "Bearer s3cret-token"}
	bad := map[string]string{"Authorization": "Bearer guess"}

	for _, tc := range []struct {
		name    string
		exp     func() (sdkmetric.Exporter, error)
		wantErr string
	}{
		{"http ok", func() (sdkmetric.Exporter, error) {
			return otlpmetrichttp.New(context.Background(), otlpmetrichttp.WithEndpointURL(url), otlpmetrichttp.WithTLSClientConfig(withCert), otlpmetrichttp.WithHeaders(good))
		}, ""},
		{"http wrong token", func() (sdkmetric.Exporter, error) {
			return otlpmetrichttp.New(context.Background(), otlpmetrichttp.WithEndpointURL(url), otlpmetrichttp.WithTLSClientConfig(withCert), otlpmetrichttp.WithHeaders(bad))
		}, "401"},
		{"http no client certificate", func() (sdkmetric.Exporter, error) {
			return otlpmetrichttp.New(context.Background(), otlpmetrichttp.WithEndpointURL(url), otlpmetrichttp.WithTLSClientConfig(noCert), otlpmetrichttp.WithHeaders(good))
		}, "no client certificate"},
		{"grpc ok", func() (sdkmetric.Exporter, error) {
			return otlpmetricgrpc.New(context.Background(), otlpmetricgrpc.WithEndpoint(grpcAddr), otlpmetricgrpc.WithTLSCredentials(credentials.NewTLS(withCert)), otlpmetricgrpc.WithHeaders(good))
		}, ""},
		{"grpc no token", func() (sdkmetric.Exporter, error) {
			return otlpmetricgrpc.New(context.Background(), otlpmetricgrpc.WithEndpoint(grpcAddr), otlpmetricgrpc.WithTLSCredentials(credentials.NewTLS(withCert)),
				otlpmetricgrpc.WithRetry(otlpmetricgrpc.RetryConfig{Enabled: false}))
		}, "Unauthenticated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp, err := tc.exp()
			if err != nil {
				t.Fatal(err)
			}
			s := newServiceWith(t, exp, "checkout", "v1", 0, 1)
			s.hist.Record(context.Background(), 0.1, s.ok)
			err = s.mp.ForceFlush(context.Background())
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("export failed: %v", err)
			case tc.wantErr == "no client certificate":
				// TLS 1.3 rejects the missing certificate after the client's
				// handshake, so the client's words vary; it must not get as far as HTTP.
				if err == nil || regexp.MustCompile(`\b401\b`).MatchString(err.Error()) { // not a port like 40151
					t.Errorf("export without a client certificate: %v", err)
				}
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("export error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}

	for _, tc := range []struct {
		path, user, pass string
		want             int
	}{
		{"/api/v1/guards", "", "", 401},
		{"/api/v1/guards", "ops", "wrong", 401},
		{"/api/v1/guards", "ops", "hunter2", 200},
		{"/metrics", "", "", 401},
		{"/-/healthy", "", "", 200},
		{"/-/ready", "", "", 200},
	} {
		req, _ := http.NewRequest("GET", td.web+tc.path, nil)
		if tc.user != "" {
			req.SetBasicAuth(tc.user, tc.pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s as %q: %d, want %d", tc.path, tc.user, resp.StatusCode, tc.want)
		}
	}
}
