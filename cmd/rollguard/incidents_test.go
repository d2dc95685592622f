package main

import (
	"bytes"
	"context"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/web"
)

const (
	cliIncident = "inc-d-9efbd2039229"
	cliKillFast = "d-9efbd2039229/flag_kill/fast-pay"
	cliKillNew  = "d-9efbd2039229/flag_kill/new-checkout"
)

// cliAPI is rollguard's web.Handler, behind the listener's Authenticator
// as the daemon serves it, over a running playbook with one incident: two
// flag kills held for approval.
type cliAPI struct {
	url      string
	playbook *actions.Playbook
	now      time.Time
}

func newCLIAPI(t *testing.T, auth configs.ServerConfig) *cliAPI {
	t.Helper()
	cfg, err := configs.Parse([]byte(`
playbook:
  approval: [flag_kill]
guards:
  - name: checkout
    service: checkout
    signals:
      - name: errors
`))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	detected := start.Add(3 * time.Minute)
	pb := actions.NewPlaybook(actions.PlaybookOptions{Publisher: nopPublisher{}, Subjects: actions.Subjects{Prefix: "rollguard"},
		Config: cfg, Tick: 10 * time.Millisecond, Now: func() time.Time { return detected }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pb.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	d := detector.Deployment{ID: "d-9efbd2039229", Service: "checkout", Version: "v2", PreviousVersion: "v1",
		Flags: []string{"new-checkout", "fast-pay"}, Migration: "none", Source: "api", StartedAt: start}
	pb.HandleVerdict(detector.GuardVerdict{Guard: "checkout", Deployment: d, State: detector.StateRegressed, At: detected, Since: start,
		Signals: []detector.Evidence{{Signal: "errors", Kind: "sequential", State: detector.StateRegressed,
			Baseline:  detector.CohortCounts{Version: "v1", Total: 10000, Bad: 50, Ratio: 0.005},
			Candidate: detector.CohortCounts{Version: "v2", Total: 1000, Bad: 40, Ratio: 0.04},
			Estimate:  8, IntervalLow: 4, IntervalHigh: 15, Theta0: 1, EValue: 5000, Threshold: 1000, Alpha: 0.001, Ticks: 12}}})
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := pb.Incident(cliIncident); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the playbook opened no incident within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	api := &cliAPI{playbook: pb, now: start.Add(time.Hour)}
	authn, err := web.NewAuthenticator(auth)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(authn.Wrap(web.Handler(web.Options{Deployments: detector.NewEngine(cfg, detector.EngineOptions{}),
		Incidents: pb, Gatherer: prometheus.NewRegistry(), Now: func() time.Time { return api.now }}), "/-/healthy", "/-/ready"))
	t.Cleanup(srv.Close)
	api.url = srv.URL
	return api
}

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, actions.Message) error { return nil }

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = rollguard(args, &out, &errb)
	return code, out.String(), errb.String()
}

// closedURL is an address nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func writeSecret(t *testing.T, name, s string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, []byte(s+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestPostmortemCLI: `rollguard postmortem ID` prints the draft the
// daemon renders, with the listener's credentials; an unknown incident, a
// refused credential or no daemon is a message and exit code 1.
func TestPostmortemCLI(t *testing.T) {
	api := newCLIAPI(t, configs.ServerConfig{Authorization: &commoncfg.Authorization{Credentials: "s3cret"}})
	token := writeSecret(t, "token", "s3cret")

	inc, _ := api.playbook.Incident(cliIncident)
	var want bytes.Buffer
	if err := actions.RenderPostmortem(&want, inc, api.now); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI("postmortem", "--web.url="+api.url+"/", "--web.bearer-token-file="+token, cliIncident)
	if code != 0 || errOut != "" || out != want.String() {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s\nwant:\n%s", code, errOut, out, want.String())
	}
	if !strings.HasPrefix(out, "# Post-mortem draft: checkout — "+cliIncident+"\n") || !strings.Contains(out, "- Time to detect: **3m** (") {
		t.Errorf("not the incident's draft:\n%s", out)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		err  string // stderr, exactly, or its prefix when it ends in "…"
	}{
		{"unknown incident", []string{"--web.url=" + api.url, "--web.bearer-token-file=" + token, "inc-d-000000000000"},
			1, "rollguard: postmortem: no incident \"inc-d-000000000000\" (HTTP 404)\n"},
		{"no credentials", []string{"--web.url=" + api.url, cliIncident},
			1, "rollguard: postmortem: missing or invalid credentials in the Authorization header (HTTP 401)\n"},
		{"wrong token", []string{"--web.url=" + api.url, "--web.bearer-token-file=" + writeSecret(t, "bad", "guess"), cliIncident},
			1, "rollguard: postmortem: missing or invalid credentials in the Authorization header (HTTP 401)\n"},
		{"missing token file", []string{"--web.url=" + api.url, "--web.bearer-token-file=/nonexistent/token", cliIncident},
			1, "rollguard: postmortem: read --web.bearer-token-file: open /nonexistent/token: no such file or directory\n"},
		{"nothing listening", []string{"--web.url=" + closedURL(t), cliIncident},
			1, "rollguard: postmortem: cannot reach rollguard at http://127.0.0.1:…"},
		{"a command id", []string{"--web.url=" + api.url, cliKillFast},
			1, "rollguard: postmortem: \"" + cliKillFast + "\" is not an incident id: postmortem takes one like inc-d-3fa2b1c0d4e5, not a command id\n"},
		{"not a rollguard", []string{"--web.url=" + api.url + "/-/healthy?", cliIncident},
			1, "rollguard: postmortem: …"},
		{"no id", nil, 2, "rollguard: required argument 'id' not provided (try --help)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(append([]string{"postmortem"}, tc.args...)...)
			prefix, isPrefix := strings.CutSuffix(tc.err, "…")
			if code != tc.code || out != "" || (isPrefix && !strings.HasPrefix(errOut, prefix)) || (!isPrefix && errOut != tc.err) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stderr %q", code, out, errOut, tc.code, tc.err)
			}
		})
	}
}

// TestApproveCLI: `rollguard approve ID` releases held commands and prints
// their ids; what the daemon refuses (unknown, nothing held, no
// credentials) is its message and exit code 1.
func TestApproveCLI(t *testing.T) {
	api := newCLIAPI(t, configs.ServerConfig{BasicAuth: &commoncfg.BasicAuth{Username: "ops", Password: "hunter2"}})
	pw := writeSecret(t, "password", "hunter2")
	auth := []string{"--web.url=" + api.url, "--web.username=ops", "--web.password-file=" + pw}
	t.Setenv("USER", "carol")

	for _, step := range []struct {
		name string
		args []string
		code int
		out  string
		err  string
	}{
		{"no credentials", []string{"--web.url=" + api.url, cliIncident}, 1, "",
			"rollguard: approve: missing or invalid credentials in the Authorization header (HTTP 401)\n"},
		{"wrong password", []string{"--web.url=" + api.url, "--web.username=ops", "--web.password-file=" + writeSecret(t, "bad", "guess"), cliIncident}, 1, "",
			"rollguard: approve: missing or invalid credentials in the Authorization header (HTTP 401)\n"},
		{"unknown command", append(auth, "d-9efbd2039229/flag_kill/nope"), 1, "",
			"rollguard: approve: no incident or command \"d-9efbd2039229/flag_kill/nope\" (HTTP 404)\n"},
		{"one command, by alice", append(auth, "--by=alice", cliKillNew), 0, cliKillNew + "\n", ""},
		{"the same again", append(auth, cliKillNew), 1, "",
			"rollguard: approve: nothing is waiting for approval in \"" + cliKillNew + "\": it was approved already or never held (HTTP 409)\n"},
		{"the rest of the incident, by $USER", append(auth, cliIncident), 0, cliKillFast + "\n", ""},
		{"the incident again", append(auth, cliIncident), 1, "",
			"rollguard: approve: nothing is waiting for approval in \"" + cliIncident + "\": it was approved already or never held (HTTP 409)\n"},
	} {
		code, out, errOut := runCLI(append([]string{"approve"}, step.args...)...)
		if code != step.code || out != step.out || errOut != step.err {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr %q",
				step.name, code, out, errOut, step.code, step.out, step.err)
		}
	}
	inc, _ := api.playbook.Incident(cliIncident)
	by := map[string]string{}
	for _, c := range inc.Commands {
		by[c.ID] = c.ApprovedBy
	}
	if by[cliKillNew] != "alice" || by[cliKillFast] != "carol" {
		t.Errorf("approved by %v, want %s by alice and %s by carol", by, cliKillNew, cliKillFast)
	}

	if code, out, errOut := runCLI("approve", "--web.url="+closedURL(t), "--by=alice", cliIncident); code != 1 || out != "" ||
		!strings.HasPrefix(errOut, "rollguard: approve: cannot reach rollguard at http://127.0.0.1:") {
		t.Errorf("no daemon: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, _, errOut := runCLI("approve", "--web.url="+api.url); code != 2 || errOut != "rollguard: required argument 'id' not provided (try --help)\n" {
		t.Errorf("no id: exit %d, stderr %q", code, errOut)
	}
}
