// Package amtest runs a real Alertmanager for tests (`make alertmanager`
// builds it from the Go module proxy) and reads its alerts back through its
// API. Only tests import it.
package amtest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/internal/poll"
)

// Binary finds an Alertmanager (Path). Without one the test is skipped
// with a loud message (and fails under CI).
func Binary(t testing.TB) string {
	t.Helper()
	if p := Path(); p != "" {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatal("alertmanager is not installed: .ci/run must run `make alertmanager`")
	}
	t.Skip(Missing)
	return ""
}

// Missing is the message of a test skipped for want of an Alertmanager.
const Missing = "SKIPPED: alertmanager is not installed and ROLLGUARD_ALERTMANAGER is unset — " +
	"run `make alertmanager` to test the Alertmanager notifier against a real server"

// Path is $ROLLGUARD_ALERTMANAGER, alertmanager on PATH, or
// $(go env GOPATH)/bin/alertmanager, whichever exists first; "" if none.
func Path() string {
	candidates := []string{os.Getenv("ROLLGUARD_ALERTMANAGER")}
	if p, err := exec.LookPath("alertmanager"); err == nil {
		candidates = append(candidates, p)
	}
	if gp, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		candidates = append(candidates, filepath.Join(strings.TrimSpace(string(gp)), "bin", "alertmanager"))
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if _, err := os.Stat(c); err == nil {
			return c
		}
	}
	return ""
}

// Alertmanager is a running Alertmanager.
type Alertmanager struct {
	URL  string
	t    testing.TB
	bin  string
	dir  string
	addr string
	cmd  *exec.Cmd
}

// Start runs an Alertmanager on a loopback port with a minimal
// configuration (one receiver that sends nowhere), clustering off and its
// storage in a temporary folder, until the test ends.
func Start(t testing.TB) *Alertmanager {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	cfg := "route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n"
	if err := os.WriteFile(filepath.Join(dir, "alertmanager.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	a := &Alertmanager{URL: "http://" + addr, t: t, bin: bin, dir: dir, addr: addr}
	a.start()
	t.Cleanup(a.Stop)
	return a
}

func (a *Alertmanager) start() {
	a.t.Helper()
	a.cmd = exec.Command(a.bin, "--config.file="+filepath.Join(a.dir, "alertmanager.yml"),
		"--storage.path="+filepath.Join(a.dir, "data"), "--web.listen-address="+a.addr,
		"--cluster.listen-address=", "--log.level=warn")
	a.cmd.Stdout, a.cmd.Stderr = os.Stderr, os.Stderr
	if err := a.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	poll.Until(a.t, 60*time.Second, func() error {
		resp, err := http.Get(a.URL + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("alertmanager ready: %s", resp.Status)
		}
		return nil
	})
}

// Stop ends the Alertmanager; it keeps no alerts.
func (a *Alertmanager) Stop() {
	if a.cmd != nil {
		_ = a.cmd.Process.Kill()
		_ = a.cmd.Wait()
		a.cmd = nil
	}
}

// Restart stops the Alertmanager and starts it again on the same port:
// it comes back without the alerts it had.
func (a *Alertmanager) Restart() {
	a.t.Helper()
	a.Stop()
	a.start()
}

// Alert is an alert as GET /api/v2/alerts returns it.
type Alert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Status       struct {
		State string `json:"state"`
	} `json:"status"`
}

// Alerts are the alerts the Alertmanager holds now (resolved ones are not
// listed) matching the label matchers, like `incident="inc-1"`.
func (a *Alertmanager) Alerts(matchers ...string) ([]Alert, error) {
	q := url.Values{}
	for _, m := range matchers {
		q.Add("filter", m)
	}
	resp, err := http.Get(a.URL + "/api/v2/alerts?" + q.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET /api/v2/alerts: %s", resp.Status)
	}
	var out []Alert
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("decode alerts: %w", err)
	}
	return out, nil
}
