package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/rollguard/rollguard/internal/natstest"
)

// runNATS starts a separate NATS server with JetStream, as an operator's
// cluster would be, with the given auth settings.
func runNATS(t *testing.T, configure func(*server.Options)) *server.Server {
	t.Helper()
	return natstest.Start(t, configure)
}

// TestExternalNATS: with a URL, rollguard connects to that server with the
// configured credentials, and commands land in its stream; wrong credentials
// are a clear start-up error.
func TestExternalNATS(t *testing.T) {
	for _, tc := range []struct {
		name, auth string
		configure  func(*server.Options)
	}{
		{"user-password", "  user: rollguard\n  password: s3cret\n", func(o *server.Options) { o.Username, o.Password = "rollguard", "s3cret" }},
		{"token", "  token: t0ken\n", func(o *server.Options) { o.Authorization = "t0ken" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := runNATS(t, tc.configure)
			url := ns.ClientURL()
			cfg := strings.Replace(testConfig, "nats:\n", "nats:\n  url: "+url+"\n"+tc.auth, 1)
			td := startDaemon(t, cfg)
			if td.ns != nil {
				t.Fatal("an embedded server was started although a URL is set")
			}
			stable := newService(t, td.otlp, "checkout", "v1", 0.01, 1)
			canary := newService(t, td.otlp, "checkout", "v2", 0.10, 2)
			stable.serve(t, 500)
			checkFor(t, 30*time.Second, func() error {
				stable.serve(t, 500)
				canary.serve(t, 500)
				if n := len(td.commands()); n != 1 {
					return fmt.Errorf("%d commands", n)
				}
				return nil
			})

			bad := strings.Replace(cfg, "s3cret", "wrong", 1)
			bad = strings.Replace(bad, "t0ken", "wrong", 1)
			_, err := newDaemon(daemonOptions{ConfigFile: writeConfig(t, bad), StoragePath: t.TempDir(), WebListenAddress: "127.0.0.1:0"})
			if err == nil || !strings.Contains(err.Error(), "connect to nats "+url+": nats: Authorization Violation") {
				t.Errorf("wrong credentials: %v", err)
			}
		})
	}
}

// TestExternalNATSTLS: rollguard verifies the server against the configured
// CA; without the CA the connection is refused.
func TestExternalNATSTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, serverCert := testCA(t, dir)
	ns := runNATS(t, func(o *server.Options) {
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12}
		o.TLS = true
	})
	url := strings.Replace(ns.ClientURL(), "nats://", "tls://", 1)
	cfg := strings.Replace(testConfig, "nats:\n", "nats:\n  url: "+url+"\n  tls:\n    ca_file: "+caFile+"\n", 1)
	td := startDaemon(t, cfg)
	if td.ns != nil || !td.daemon.nc.TLSRequired() {
		t.Fatal("not connected over TLS to the external server")
	}

	noCA := strings.Replace(cfg, "    ca_file: "+caFile+"\n", "    server_name: localhost\n", 1)
	_, err := newDaemon(daemonOptions{ConfigFile: writeConfig(t, noCA), StoragePath: t.TempDir(), WebListenAddress: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("server certificate from an unknown CA was accepted: %v", err)
	}
}

// testCA writes a CA certificate to dir and returns its path and a server
// certificate for 127.0.0.1 signed by it.
func testCA(t *testing.T, dir string) (string, tls.Certificate) {
	t.Helper()
	ca := newCA(t)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, ca.issue(t, x509.ExtKeyUsageServerAuth)
}

type certAuthority struct {
	der  []byte
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T) *certAuthority {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rollguard test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &certAuthority{der: der, cert: cert, key: key}
}

// issue signs a certificate for 127.0.0.1/localhost for the given use.
func (ca *certAuthority) issue(t *testing.T, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "rollguard test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// writePair writes a certificate and its key as PEM files.
func writePair(t *testing.T, dir, name string, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	kb, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
