package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/internal/natstest"
)

// withWebAuth puts basic auth (ops/hunter2) and extra web: settings into
// the test configuration.
func withWebAuth(extra string) string {
	return strings.Replace(testConfig, "guards:\n", "web:\n  basic_auth:\n    username: ops\n    password: hunter2\n"+extra+"guards:\n", 1)
}

// webRequest sends one request to the daemon's web listener with exactly
// the headers given, as ops when auth is true.
func (td *testDaemon) webRequest(method, path, body string, header map[string]string, auth bool) (int, string) {
	td.t.Helper()
	req, err := http.NewRequest(method, td.web+path, strings.NewReader(body))
	if err != nil {
		td.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if auth {
		req.SetBasicAuth("ops", "hunter2")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		td.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestWebCrossOrigin: with basic auth, a page on another site makes the
// browser POST text/plain with the credentials it holds; rollguard refuses
// the announcement, the approval and the reload, and no deployment is
// created. Its twin, the same announcement from rollguard's own origin as
// JSON, is created; so is one from a program (the rollguard CLI's
// request: JSON, no browser headers).
func TestWebCrossOrigin(t *testing.T) {
	td := startDaemon(t, withWebAuth(""))
	evil := map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"}
	for _, req := range []struct{ path, body string }{
		{"/api/v1/deployments", `{"service":"checkout","version":"v2","previous_version":"v1"}`},
		{"/api/v1/approvals", `{"id":"inc-d-3fa2b1c0d4e5","by":"mallory"}`},
		{"/-/reload", ""},
	} {
		if code, b := td.webRequest(http.MethodPost, req.path, req.body, evil, true); code != http.StatusForbidden || !strings.Contains(b, "cross-origin POST refused") {
			t.Errorf("cross-origin POST %s with credentials: %d %s, want 403", req.path, code, b)
		}
	}
	if code, b := td.webRequest(http.MethodGet, "/api/v1/deployments", "", nil, true); code != http.StatusOK || strings.Contains(b, `"v2"`) {
		t.Fatalf("after the forged announcement: %d %s, want no deployment of v2", code, b)
	}

	same := map[string]string{"Origin": td.web, "Sec-Fetch-Site": "same-origin", "Content-Type": "application/json"}
	if code, b := td.webRequest(http.MethodPost, "/api/v1/deployments", `{"service":"checkout","version":"v2","previous_version":"v1"}`, same, true); code != http.StatusCreated {
		t.Fatalf("same-origin announcement: %d %s", code, b)
	}
	if code, b := td.webRequest(http.MethodGet, "/api/v1/deployments", "", nil, true); code != http.StatusOK || !strings.Contains(b, `"v2"`) {
		t.Fatalf("after the same-origin announcement: %d %s, want the deployment of v2", code, b)
	}
	program := map[string]string{"Content-Type": "application/json"}
	if code, b := td.webRequest(http.MethodPost, "/api/v1/deployments", `{"service":"checkout","version":"v3","previous_version":"v2"}`, program, true); code != http.StatusCreated {
		t.Fatalf("announcement from a program: %d %s", code, b)
	}
	if code, b := td.webRequest(http.MethodPost, "/-/reload", "", nil, true); code != http.StatusOK {
		t.Fatalf("reload from a program: %d %s", code, b)
	}
	// The profiles need the same credentials as the API.
	if code, _ := td.webRequest(http.MethodGet, "/debug/pprof/", "", nil, false); code != http.StatusUnauthorized {
		t.Errorf("GET /debug/pprof/ without credentials: %d, want 401", code)
	}
	if code, b := td.webRequest(http.MethodGet, "/debug/pprof/", "", nil, true); code != http.StatusOK || !strings.Contains(b, "goroutine") {
		t.Errorf("GET /debug/pprof/ with credentials: %d", code)
	}
}

// TestSidecarListener: a sidecar's web listener has the same bounds and
// the same cross-origin check: a forged reload is refused and changes
// nothing, the program's reload applies the file (healthy twin), and a
// trickled remote write is cut off at read_timeout.
func TestSidecarListener(t *testing.T) {
	ns := natstest.Start(t)
	// startDaemon reads the commands stream, which a central creates.
	startDaemon(t, strings.Replace(testConfig, "nats:\n", "nats:\n  url: "+ns.ClientURL()+"\n", 1))
	cfg := strings.Replace(testConfig, "nats:\n", "mode: sidecar\nnats:\n  url: "+ns.ClientURL()+"\n", 1)
	cfg = strings.Replace(cfg, "guards:\n", "web:\n  read_timeout: 1s\nguards:\n", 1)
	sc := startDaemon(t, cfg)
	valid := cfg + "      - name: writes\n        type: data_integrity\n        metric: db.client.failed_writes\n        total_metric: http.server.request.duration\n"
	if err := os.WriteFile(sc.file, []byte(valid), 0o644); err != nil {
		t.Fatal(err)
	}
	evil := map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"}
	if code, b := sc.webRequest(http.MethodPost, "/-/reload", "", evil, false); code != http.StatusForbidden {
		t.Fatalf("cross-origin reload of a sidecar: %d %s, want 403", code, b)
	}
	if sc.sidecar.aggregator.Wants("db.client.failed_writes") {
		t.Fatal("a cross-origin reload applied the file")
	}
	if code, b := sc.post("/-/reload", ""); code != http.StatusOK {
		t.Fatalf("reload: %d %s", code, b)
	}
	if !sc.sidecar.aggregator.Wants("db.client.failed_writes") {
		t.Fatal("the reload did not apply the file")
	}
	if d := trickle(t, sc.web+"/api/v1/write"); d < time.Second {
		t.Errorf("the sidecar ended a trickling remote write after %s, before its read_timeout", d)
	}
}

// trickle sends a request to addr whose body comes one byte every 20 ms
// (a 100 kB body: half an hour) and reports how long the server took to
// end the exchange; it fails the test if the server still holds it after
// 20 s.
func trickle(t *testing.T, rawURL string) time.Duration {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-protobuf\r\nContent-Length: 100000\r\n\r\n", u.Path, u.Host); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := conn.Write([]byte{0}); err != nil {
					return
				}
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s still held a trickling request after 20s", rawURL)
	}
	return time.Since(start)
}

// TestListenerReadTimeout: read_timeout set under otlp: and web: cuts off
// a client that trickles its body to OTLP/HTTP or to remote write; whole
// requests on both listeners are still served (healthy twin).
func TestListenerReadTimeout(t *testing.T) {
	cfg := strings.Replace(testConfig, "otlp:\n", "otlp:\n  read_timeout: 1s\n", 1)
	cfg = strings.Replace(cfg, "guards:\n", "web:\n  read_timeout: 1s\nguards:\n", 1)
	td := startDaemon(t, cfg)
	for _, u := range []string{td.otlp, td.web + "/api/v1/write"} {
		if d := trickle(t, u); d < time.Second {
			t.Errorf("%s ended a trickling request after %s, before its read_timeout", u, d)
		}
	}
	resp, err := http.Post(td.otlp, "application/json", bytes.NewReader([]byte(`{"resourceMetrics":[]}`)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("whole OTLP request: %d", resp.StatusCode)
	}
	if code, b := td.get("/api/v1/guards"); code != http.StatusOK {
		t.Errorf("GET /api/v1/guards: %d %s", code, b)
	}
}

// ingestGauge reads rollguard_ingest_unauthenticated from /metrics.
func (td *testDaemon) ingestGauge(auth bool) string {
	td.t.Helper()
	code, b := td.webRequest(http.MethodGet, "/metrics", "", nil, auth)
	if code != http.StatusOK {
		td.t.Fatalf("GET /metrics: %d", code)
	}
	return strings.Join(regexp.MustCompile(`(?m)^rollguard_ingest_unauthenticated\{.*$`).FindAllString(b, -1), "\n")
}

// TestIngestAuthGauge: with a token on OTLP and none on the web listener,
// remote write is open and rollguard_ingest_unauthenticated says so; a
// reload that secures the web listener closes it. The listeners' caps
// and the connection of the scrape itself are exported too.
func TestIngestAuthGauge(t *testing.T) {
	cfg := strings.Replace(testConfig, "otlp:\n", "otlp:\n  authorization:\n    credentials: s3cret\n", 1)
	td := startDaemon(t, cfg)
	want := `rollguard_ingest_unauthenticated{path="otlp_grpc"} 0
rollguard_ingest_unauthenticated{path="otlp_http"} 0
rollguard_ingest_unauthenticated{path="remote_write"} 1`
	if got := td.ingestGauge(false); got != want {
		t.Fatalf("gauge:\n%s\nwant:\n%s", got, want)
	}
	_, b := td.webRequest(http.MethodGet, "/metrics", "", nil, false)
	for _, line := range []string{`rollguard_listener_max_connections{listener="web"} 1024`, `rollguard_listener_max_connections{listener="otlp_http"} 1024`,
		`rollguard_listener_max_connections{listener="otlp_grpc"} 1024`} {
		if !strings.Contains(b, line+"\n") {
			t.Errorf("/metrics lacks %s", line)
		}
	}
	// At least the scrape's own connection (the client may keep others).
	if !regexp.MustCompile(`(?m)^rollguard_listener_connections\{listener="web"\} [1-9]`).MatchString(b) {
		t.Errorf("/metrics does not count the scrape's connection to the web listener:\n%s", b)
	}
	secured := strings.Replace(cfg, "guards:\n", "web:\n  basic_auth:\n    username: ops\n    password: hunter2\nguards:\n", 1)
	if err := os.WriteFile(td.file, []byte(secured), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, b := td.post("/-/reload", ""); code != http.StatusOK {
		t.Fatalf("reload: %d %s", code, b)
	}
	want = strings.Replace(want, `"remote_write"} 1`, `"remote_write"} 0`, 1)
	if got := td.ingestGauge(true); got != want {
		t.Fatalf("gauge after securing the web listener:\n%s\nwant:\n%s", got, want)
	}
}

// TestIngestAuthWarning: rollguard warns, naming the open path and the
// fix, when one ingest path requires credentials and another does not;
// not when all or none do, and on reload when listener bounds change.
func TestIngestAuthWarning(t *testing.T) {
	token := "  authorization:\n    credentials: s3cret\n"
	for _, tc := range []struct {
		name, otlp, web, want string
	}{
		{"remote write open", token, "", `[WARN]  ingest path open: it accepts telemetry without credentials while another requires them, so anyone who reaches it can feed verdicts: open=remote_write secured="otlp_http,otlp_grpc" fix="set authorization or basic_auth under web: as well"`},
		{"otlp open", "", token, `[WARN]  ingest path open: it accepts telemetry without credentials while another requires them, so anyone who reaches it can feed verdicts: open="otlp_http,otlp_grpc" secured=remote_write fix="set authorization or basic_auth under otlp: as well"`},
		{"both secured", token, token, ""},
		{"none secured", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := configs.Parse([]byte("otlp:\n  http_listen_address: :4318\n  grpc_listen_address: :4317\n" + tc.otlp + "web:\n" + tc.web + configGuards))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			(&daemon{log: hclog.New(&hclog.LoggerOptions{Output: &out, DisableTime: true})}).checkListeners(nil, cfg)
			if got := strings.TrimSpace(out.String()); got != tc.want {
				t.Errorf("log:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
	t.Run("bounds changed on reload", func(t *testing.T) {
		old, _ := configs.Parse([]byte(configGuards))
		cfg, err := configs.Parse([]byte("web:\n  max_connections: 10\n" + configGuards))
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		d := &daemon{log: hclog.New(&hclog.LoggerOptions{Output: &out, DisableTime: true})}
		d.checkListeners(old, old)
		if out.Len() != 0 {
			t.Fatalf("unchanged bounds: %s", out.String())
		}
		d.checkListeners(old, cfg)
		if got, want := strings.TrimSpace(out.String()), "[WARN]  listener timeouts and max_connections change only on restart"; got != want {
			t.Errorf("log %q, want %q", got, want)
		}
	})
}

const configGuards = "guards:\n  - name: checkout\n    service: checkout\n    signals:\n      - name: errors\n"
