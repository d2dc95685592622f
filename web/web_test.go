package web_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/sources"
	"github.com/rollguard/rollguard/web"
)

const apiConfig = `
guards:
  - name: checkout
    service: checkout
    flags: [new-checkout-flow]
    signals:
      - name: errors
`

// apiNow is the engine's clock: deployments start at it.
var apiNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// apiServer is web.Handler over a real detector.Engine and actions.Playbook.
type apiServer struct {
	engine    *detector.Engine
	srv       *httptest.Server
	ready     atomic.Bool
	reloadErr atomic.Pointer[error]
	reloads   atomic.Int32
}

func newAPIServer(t testing.TB, maxBody int64) *apiServer {
	t.Helper()
	cfg, err := configs.Parse([]byte(apiConfig))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s := &apiServer{engine: detector.NewEngine(cfg, detector.EngineOptions{
		Registerer: reg,
		Now:        func() time.Time { return apiNow },
	})}
	s.ready.Store(true)
	probe := prometheus.NewCounter(prometheus.CounterOpts{Name: "web_test_probe_total", Help: "A counter only the test sets."})
	probe.Add(3)
	reg.MustRegister(probe)
	h := web.Handler(web.Options{
		Deployments: s.engine,
		Incidents:   actions.NewPlaybook(actions.PlaybookOptions{}),
		Reload: func() error {
			s.reloads.Add(1)
			if p := s.reloadErr.Load(); p != nil {
				return *p
			}
			return nil
		},
		Ready: func() error {
			if !s.ready.Load() {
				return errors.New("starting")
			}
			return nil
		},
		Gatherer:     reg,
		MaxBodyBytes: maxBody,
	})
	s.srv = httptest.NewServer(h)
	t.Cleanup(s.srv.Close)
	return s
}

// seeVersion makes the engine see version from telemetry, as a stable version.
func (s *apiServer) seeVersion(t testing.TB, version string) {
	t.Helper()
	err := s.engine.Append([]sources.Sample{{
		Metric: "http.server.request.duration",
		Labels: sources.Labels{{Name: "service.name", Value: "checkout"}, {Name: "service.version", Value: version}},
		Kind:   sources.KindHistogram, Count: 1,
	}})
	if err != nil {
		t.Fatal(err)
	}
}

type apiResponse struct {
	code int
	ct   string
	body string
}

func (s *apiServer) do(t testing.TB, method, path, body string) apiResponse {
	t.Helper()
	req, err := http.NewRequest(method, s.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if method == http.MethodPost { // as the CLI sends it
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return apiResponse{resp.StatusCode, resp.Header.Get("Content-Type"), string(b)}
}

// jsonBody decodes a JSON response, checking its Content-Type.
func jsonBody(t testing.TB, r apiResponse) map[string]any {
	t.Helper()
	if r.ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", r.ct)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

func checkError(t testing.TB, r apiResponse, code int, msg string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d, want %d; body %s", r.code, code, r.body)
	}
	got := jsonBody(t, r)
	if want := map[string]any{"status": "error", "error": msg}; !reflect.DeepEqual(got, want) {
		t.Errorf("body %v, want %v", got, want)
	}
}

func TestProbes(t *testing.T) {
	tests := []struct {
		name, method, path string
		ready              bool
		code               int
		body               string
	}{
		{"healthy", http.MethodGet, "/-/healthy", true, http.StatusOK, "rollguard is healthy.\n"},
		{"healthy while not ready", http.MethodGet, "/-/healthy", false, http.StatusOK, "rollguard is healthy.\n"},
		{"ready", http.MethodGet, "/-/ready", true, http.StatusOK, "rollguard is ready.\n"},
		{"not ready", http.MethodGet, "/-/ready", false, http.StatusServiceUnavailable, "rollguard is not ready: starting\n"},
		{"healthy is GET only", http.MethodPost, "/-/healthy", true, http.StatusMethodNotAllowed, "Method Not Allowed\n"},
		{"reload is POST only", http.MethodGet, "/-/reload", true, http.StatusMethodNotAllowed, "Method Not Allowed\n"},
		{"unknown path", http.MethodGet, "/-/nope", true, http.StatusNotFound, "404 page not found\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newAPIServer(t, 0)
			s.ready.Store(tt.ready)
			r := s.do(t, tt.method, tt.path, "")
			if r.code != tt.code || r.body != tt.body {
				t.Errorf("%s %s = %d %q, want %d %q", tt.method, tt.path, r.code, r.body, tt.code, tt.body)
			}
			if s.reloads.Load() != 0 {
				t.Error("a probe triggered a reload")
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	s := newAPIServer(t, 0)
	if r := s.do(t, http.MethodPost, "/api/v1/deployments", `{"service":"checkout","version":"v2","previous_version":"v1"}`); r.code != http.StatusCreated {
		t.Fatalf("announce: %d %s", r.code, r.body)
	}
	r := s.do(t, http.MethodGet, "/metrics", "")
	if r.code != http.StatusOK {
		t.Fatalf("status %d, want 200", r.code)
	}
	if !strings.HasPrefix(r.ct, "text/plain") {
		t.Errorf("Content-Type %q, want the text exposition format", r.ct)
	}
	for _, line := range []string{
		"web_test_probe_total 3",
		`rollguard_deployments_opened_total{source="api"} 1`,
	} {
		if !strings.Contains(r.body, "\n"+line+"\n") {
			t.Errorf("/metrics lacks %q:\n%s", line, r.body)
		}
	}
}

var deploymentIDRe = regexp.MustCompile(`^d-[0-9a-f]{12}$`)

func TestAnnounce(t *testing.T) {
	started := apiNow.Format(time.RFC3339)
	deployment := func(id, version, prev string, flags []any, migration string) map[string]any {
		return map[string]any{
			"id": id, "service": "checkout", "version": version, "previous_version": prev,
			"flags": flags, "migration": migration, "source": "api", "started_at": started,
		}
	}
	guardFlags := []any{"new-checkout-flow"}
	tests := []struct {
		name    string
		seen    string // a version telemetry showed before the announcement
		maxBody int64
		body    string
		code    int
		want    map[string]any // the deployment on 201
		err     string         // the message on an error
	}{
		{
			name: "minimal: id, flags and migration default",
			body: `{"service":"checkout","version":"v2","previous_version":"v1"}`,
			code: http.StatusCreated,
			want: deployment("d-9efbd2039229", "v2", "v1", guardFlags, "none"),
		},
		{
			name: "previous_version defaults to the stable version seen",
			seen: "v1",
			body: `{"service":"checkout","version":"v2"}`,
			code: http.StatusCreated,
			want: deployment("d-9efbd2039229", "v2", "v1", guardFlags, "none"),
		},
		{
			name: "an explicit previous_version wins over the one seen",
			seen: "v2",
			body: `{"service":"checkout","version":"v3","previous_version":"v1"}`,
			code: http.StatusCreated,
			want: deployment("d-8434e5cc2900", "v3", "v1", guardFlags, "none"),
		},
		{
			name: "every field given",
			body: `{"id":"release-42","service":"checkout","version":"v2","previous_version":"v1","commit":"abc123",
				"previous_commit":"def456","flags":["fast-pay"],"migration":"irreversible","strategy":"canary"}`,
			code: http.StatusCreated,
			want: func() map[string]any {
				d := deployment("release-42", "v2", "v1", []any{"fast-pay"}, "irreversible")
				d["commit"], d["previous_commit"], d["strategy"] = "abc123", "def456", "canary"
				return d
			}(),
		},
		{
			name: "an empty flags list is kept: the deployment kills no flag",
			body: `{"service":"checkout","version":"v2","previous_version":"v1","flags":[]}`,
			code: http.StatusCreated,
			want: deployment("d-9efbd2039229", "v2", "v1", []any{}, "none"),
		},
		{
			name: "null flags take the guard's flags",
			body: `{"service":"checkout","version":"v2","previous_version":"v1","flags":null}`,
			code: http.StatusCreated,
			want: deployment("d-9efbd2039229", "v2", "v1", guardFlags, "none"),
		},
		{
			name: "malformed JSON",
			body: `{"service":"checkout",}`,
			code: http.StatusBadRequest,
			err:  "decode deployment: invalid character '}' looking for beginning of object key string",
		},
		{
			name: "truncated JSON",
			body: `{"service":"checkout"`,
			code: http.StatusBadRequest,
			err:  "decode deployment: unexpected EOF",
		},
		{
			name: "unknown field",
			body: `{"service":"checkout","version":"v2","previous_version":"v1","colour":"red"}`,
			code: http.StatusBadRequest,
			err:  `decode deployment: unknown field "colour"`,
		},
		{
			name: "trailing data",
			body: `{"service":"checkout","version":"v2","previous_version":"v1"} {}`,
			code: http.StatusBadRequest,
			err:  "decode deployment: trailing data after the JSON object",
		},
		{
			name: "missing service",
			body: `{"version":"v2","previous_version":"v1"}`,
			code: http.StatusBadRequest,
			err:  "service is required",
		},
		{
			name: "missing version",
			body: `{"service":"checkout","previous_version":"v1"}`,
			code: http.StatusBadRequest,
			err:  "version is required",
		},
		{
			name: "missing previous_version before any version was seen",
			body: `{"service":"checkout","version":"v2"}`,
			code: http.StatusBadRequest,
			err:  `previous_version is required: no stable version of service "checkout" has been seen yet`,
		},
		{
			name: "version equal to previous_version",
			seen: "v1",
			body: `{"service":"checkout","version":"v1"}`,
			code: http.StatusBadRequest,
			err:  `version and previous_version are both "v1"`,
		},
		{
			name: "unknown service",
			body: `{"service":"cart","version":"v2","previous_version":"v1"}`,
			code: http.StatusBadRequest,
			err:  `no guard watches service "cart": add a guard for it to the configuration`,
		},
		{
			name: "bad migration",
			body: `{"service":"checkout","version":"v2","previous_version":"v1","migration":"maybe"}`,
			code: http.StatusBadRequest,
			err:  `migration "maybe" must be one of none, reversible, irreversible`,
		},
		{
			name: "bad strategy",
			body: `{"service":"checkout","version":"v2","previous_version":"v1","strategy":"yolo"}`,
			code: http.StatusBadRequest,
			err:  `strategy "yolo" must be one of canary, blue_green, rolling, all_at_once`,
		},
		{
			name: "empty flag",
			body: `{"service":"checkout","version":"v2","previous_version":"v1","flags":["ok"," "]}`,
			code: http.StatusBadRequest,
			err:  "flags[1] is empty",
		},
		{
			name: "bad id",
			body: `{"id":"a b","service":"checkout","version":"v2","previous_version":"v1"}`,
			code: http.StatusBadRequest,
			err:  `id "a b" must be 1-64 letters, digits, '_' or '-'`,
		},
		{
			name:    "body over MaxBodyBytes",
			maxBody: 64,
			body:    `{"service":"checkout","version":"v2","previous_version":"v1","commit":"` + strings.Repeat("a", 64) + `"}`,
			code:    http.StatusRequestEntityTooLarge,
			err:     "body larger than 64 bytes",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newAPIServer(t, tt.maxBody)
			if tt.seen != "" {
				s.seeVersion(t, tt.seen)
			}
			r := s.do(t, http.MethodPost, "/api/v1/deployments", tt.body)
			if tt.code != http.StatusCreated {
				checkError(t, r, tt.code, tt.err)
				if got := jsonBody(t, s.do(t, http.MethodGet, "/api/v1/deployments", "")); !reflect.DeepEqual(got, map[string]any{"deployments": []any{}}) {
					t.Errorf("a refused announcement left %v", got)
				}
				return
			}
			if r.code != tt.code {
				t.Fatalf("status %d, want %d; body %s", r.code, tt.code, r.body)
			}
			got := jsonBody(t, r)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("deployment\n got: %v\nwant: %v", got, tt.want)
			}
			if id, _ := got["id"].(string); tt.want["id"] != "release-42" && !deploymentIDRe.MatchString(id) {
				t.Errorf("id %q does not match %s", id, deploymentIDRe)
			}
			list := jsonBody(t, s.do(t, http.MethodGet, "/api/v1/deployments", ""))
			if want := map[string]any{"deployments": []any{tt.want}}; !reflect.DeepEqual(list, want) {
				t.Errorf("GET /api/v1/deployments\n got: %v\nwant: %v", list, want)
			}
		})
	}
}

// TestAnnounceAgainAndSupersede: announcing the deployment under way again
// keeps its id; announcing a newer version ends it, and the list shows the
// active deployment first, then the superseded one.
func TestAnnounceAgainAndSupersede(t *testing.T) {
	s := newAPIServer(t, 0)
	first := `{"service":"checkout","version":"v2","previous_version":"v1"}`
	for i := 0; i < 2; i++ {
		r := s.do(t, http.MethodPost, "/api/v1/deployments", first)
		if r.code != http.StatusCreated || jsonBody(t, r)["id"] != "d-9efbd2039229" {
			t.Fatalf("announcement %d: %d %s", i, r.code, r.body)
		}
	}
	r := s.do(t, http.MethodPost, "/api/v1/deployments", `{"service":"checkout","version":"v3","previous_version":"v2","flags":[]}`)
	if r.code != http.StatusCreated || jsonBody(t, r)["id"] != "d-1596ee55cf0a" {
		t.Fatalf("newer announcement: %d %s", r.code, r.body)
	}
	var list struct {
		Deployments []detector.Deployment `json:"deployments"`
	}
	if err := json.Unmarshal([]byte(s.do(t, http.MethodGet, "/api/v1/deployments", "").body), &list); err != nil {
		t.Fatal(err)
	}
	type row struct{ id, version, supersededBy string }
	var got []row
	for _, d := range list.Deployments {
		got = append(got, row{d.ID, d.Version, d.SupersededBy})
	}
	want := []row{{"d-1596ee55cf0a", "v3", ""}, {"d-9efbd2039229", "v2", "d-1596ee55cf0a"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("deployments %+v, want %+v", got, want)
	}
}

func TestReadModels(t *testing.T) {
	s := newAPIServer(t, 0)
	if got := jsonBody(t, s.do(t, http.MethodGet, "/api/v1/incidents", "")); !reflect.DeepEqual(got, map[string]any{"incidents": []any{}}) {
		t.Errorf("incidents %v, want none", got)
	}
	var guards struct {
		Guards []detector.GuardStatus `json:"guards"`
	}
	r := s.do(t, http.MethodGet, "/api/v1/guards", "")
	if err := json.Unmarshal([]byte(r.body), &guards); err != nil {
		t.Fatal(err)
	}
	if len(guards.Guards) != 1 {
		t.Fatalf("guards %+v, want one", guards.Guards)
	}
	g := guards.Guards[0]
	if g.Name != "checkout" || g.Service != "checkout" || g.Alpha != 0.01 || !reflect.DeepEqual(g.Flags, []string{"new-checkout-flow"}) ||
		len(g.Signals) != 1 || g.Signals[0].Name != "errors" || g.Deployment != nil {
		t.Errorf("guard %+v", g)
	}
}

func TestReload(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code int
		body string // exact for 200
		msg  string // the error message for 500
	}{
		{name: "applied", code: http.StatusOK, body: "configuration reloaded\n"},
		{
			name: "refused", err: errors.New(`guards[0].alpha: must be > 0 and <= 0.5 (line 4)`),
			code: http.StatusInternalServerError,
			msg:  "reload failed, previous configuration kept: guards[0].alpha: must be > 0 and <= 0.5 (line 4)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newAPIServer(t, 0)
			if tt.err != nil {
				s.reloadErr.Store(&tt.err)
			}
			r := s.do(t, http.MethodPost, "/-/reload", "")
			if tt.err != nil {
				checkError(t, r, tt.code, tt.msg)
			} else if r.code != tt.code || r.body != tt.body {
				t.Errorf("POST /-/reload = %d %q, want %d %q", r.code, r.body, tt.code, tt.body)
			}
			if n := s.reloads.Load(); n != 1 {
				t.Errorf("Reload called %d times, want 1", n)
			}
		})
	}
}

// incidentConfig holds flag kills for approval, so an incident waits with
// two held commands until someone approves them.
const incidentConfig = `
playbook:
  approval: [flag_kill]
guards:
  - name: checkout
    service: checkout
    signals:
      - name: errors
`

// incidentServer is web.Handler over a running actions.Playbook with one
// incident open: checkout v1 → v2 regressed on errors, flag kills of
// "fast-pay" and "new-checkout" held for approval.
type incidentServer struct {
	*apiServer
	playbook *actions.Playbook
	incident actions.Incident
	now      time.Time // the post-mortem clock
}

func newIncidentServer(t *testing.T, auth *configs.ServerConfig) *incidentServer {
	t.Helper()
	cfg, err := configs.Parse([]byte(incidentConfig))
	if err != nil {
		t.Fatal(err)
	}
	detected := apiNow.Add(3 * time.Minute)
	pb := actions.NewPlaybook(actions.PlaybookOptions{Publisher: discard{}, Subjects: actions.Subjects{Prefix: "rollguard"},
		Config: cfg, Tick: 10 * time.Millisecond, Now: func() time.Time { return detected }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pb.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	d := detector.Deployment{ID: "d-9efbd2039229", Service: "checkout", Version: "v2", PreviousVersion: "v1",
		Flags: []string{"new-checkout", "fast-pay"}, Migration: "none", Source: "api", StartedAt: apiNow}
	pb.HandleVerdict(detector.GuardVerdict{Guard: "checkout", Deployment: d, State: detector.StateRegressed, At: detected, Since: apiNow,
		Signals: []detector.Evidence{{Signal: "errors", Kind: "sequential", State: detector.StateRegressed,
			Baseline:  detector.CohortCounts{Version: "v1", Total: 10000, Bad: 50, Ratio: 0.005},
			Candidate: detector.CohortCounts{Version: "v2", Total: 1000, Bad: 40, Ratio: 0.04},
			Estimate:  8, IntervalLow: 4, IntervalHigh: 15, Theta0: 1, EValue: 5000, Threshold: 1000, Alpha: 0.001, Ticks: 12}}})
	var inc actions.Incident
	deadline := time.Now().Add(5 * time.Second)
	for {
		var ok bool
		if inc, ok = pb.Incident("inc-d-9efbd2039229"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the playbook opened no incident within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}

	s := &incidentServer{apiServer: &apiServer{}, playbook: pb, incident: inc, now: apiNow.Add(time.Hour)}
	h := web.Handler(web.Options{Deployments: detector.NewEngine(cfg, detector.EngineOptions{}), Incidents: pb,
		Gatherer: prometheus.NewRegistry(), Now: func() time.Time { return s.now }})
	if auth != nil {
		a, err := web.NewAuthenticator(*auth)
		if err != nil {
			t.Fatal(err)
		}
		h = a.Wrap(h, "/-/healthy", "/-/ready") // as the daemon serves it
	}
	s.srv = httptest.NewServer(h)
	t.Cleanup(s.srv.Close)
	return s
}

type discard struct{}

func (discard) Publish(context.Context, actions.Message) error { return nil }

const (
	incidentID = "inc-d-9efbd2039229"
	killFast   = "d-9efbd2039229/flag_kill/fast-pay"
	killNew    = "d-9efbd2039229/flag_kill/new-checkout"
)

func TestIncidentEndpoint(t *testing.T) {
	s := newIncidentServer(t, nil)
	r := s.do(t, http.MethodGet, "/api/v1/incidents/"+incidentID, "")
	if r.code != http.StatusOK || r.ct != "application/json" {
		t.Fatalf("GET incident: %d %q %s", r.code, r.ct, r.body)
	}
	var got actions.Incident
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatal(err)
	}
	var held []string
	for _, c := range got.Commands {
		if c.Status == actions.CommandHeld {
			held = append(held, c.ID)
		}
	}
	if got.ID != incidentID || got.State != actions.StateWatching || got.Deployment.Version != "v2" ||
		len(got.Trigger) != 1 || got.Trigger[0].Signal != "errors" || !reflect.DeepEqual(held, []string{killFast, killNew}) {
		t.Errorf("incident %+v", got)
	}
	if !strings.Contains(r.body, `"id": "`+incidentID+`"`) || !strings.Contains(r.body, `"ratio_estimate": 8`) {
		t.Errorf("body is not the incident's JSON:\n%s", r.body)
	}

	list := jsonBody(t, s.do(t, http.MethodGet, "/api/v1/incidents", ""))
	if incs, _ := list["incidents"].([]any); len(incs) != 1 || incs[0].(map[string]any)["id"] != incidentID {
		t.Errorf("GET /api/v1/incidents = %v", list)
	}

	for _, tc := range []struct{ path, msg string }{
		{"/api/v1/incidents/inc-d-000000000000", `no incident "inc-d-000000000000"`},
		{"/api/v1/incidents/" + url.PathEscape("d-9efbd2039229"), `no incident "d-9efbd2039229"`},
		{"/api/v1/incidents/" + url.PathEscape("<x>\"y"), `no incident "<x>\"y"`},
	} {
		checkError(t, s.do(t, http.MethodGet, tc.path, ""), http.StatusNotFound, tc.msg)
	}
	if r := s.do(t, http.MethodPost, "/api/v1/incidents/"+incidentID, "{}"); r.code != http.StatusMethodNotAllowed {
		t.Errorf("POST incident: %d, want 405", r.code)
	}
}

func TestPostmortemEndpoint(t *testing.T) {
	s := newIncidentServer(t, nil)
	r := s.do(t, http.MethodGet, "/api/v1/incidents/"+incidentID+"/postmortem", "")
	if r.code != http.StatusOK || r.ct != "text/markdown; charset=utf-8" {
		t.Fatalf("GET postmortem: %d %q %s", r.code, r.ct, r.body)
	}
	var want strings.Builder
	if err := actions.RenderPostmortem(&want, s.incident, s.now); err != nil {
		t.Fatal(err)
	}
	if r.body != want.String() {
		t.Errorf("the endpoint's Markdown differs from RenderPostmortem:\n got: %s\nwant: %s", r.body, want.String())
	}
	for _, line := range []string{
		"# Post-mortem draft: checkout — " + incidentID + "\n",
		"- Time to detect: **3m** (",
		"*Draft written by rollguard at 2030-01-02 04:04:05 UTC",
		"| " + killFast + " | flag_kill | flag fast-pay → 0% | no | held (awaiting approval (rollguard approve " + killFast + ")) |",
	} {
		if !strings.Contains(r.body, line) {
			t.Errorf("post-mortem lacks %q:\n%s", line, r.body)
		}
	}
	checkError(t, s.do(t, http.MethodGet, "/api/v1/incidents/inc-nope/postmortem", ""), http.StatusNotFound, `no incident "inc-nope"`)
}

func TestApprovals(t *testing.T) {
	t.Run("bad bodies", func(t *testing.T) {
		s := newIncidentServer(t, nil)
		for _, tc := range []struct{ name, body, msg string }{
			{"empty", "", `the body is empty: send a JSON object like {"id":"inc-d-3fa2b1c0d4e5","by":"alice"}`},
			{"malformed", `{"id":`, "decode approval: unexpected EOF"},
			{"not an object", `["x"]`, "decode approval: cannot unmarshal array into Go value of type web.approval"},
			{"unknown field", `{"id":"` + killFast + `","by":"alice","force":true}`, `decode approval: unknown field "force"`},
			{"id of the wrong type", `{"id":5,"by":"alice"}`, "decode approval: id must be a string, not number"},
			{"trailing data", `{"id":"` + killFast + `","by":"alice"} {}`, "decode approval: trailing data after the JSON object"},
			{"missing id", `{"by":"alice"}`, "id is required: a command id (d-…/action/target) or an incident id (inc-d-…)"},
			{"blank id", `{"id":"  ","by":"alice"}`, "id is required: a command id (d-…/action/target) or an incident id (inc-d-…)"},
			{"missing by", `{"id":"` + killFast + `"}`, "by is required: say who approves, it is recorded in the incident"},
			{"by with a newline", `{"id":"` + killFast + `","by":"alice\nbob"}`, "by must be printable UTF-8 text"},
			{"by too long", `{"id":"` + killFast + `","by":"` + strings.Repeat("a", 129) + `"}`, "by is longer than 128 bytes"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				checkError(t, s.do(t, http.MethodPost, "/api/v1/approvals", tc.body), http.StatusBadRequest, tc.msg)
			})
		}
		r := s.do(t, http.MethodPost, "/api/v1/approvals", `{"id":"`+killFast+`","by":"`+strings.Repeat("a", 2<<20)+`"}`)
		checkError(t, r, http.StatusRequestEntityTooLarge, "body larger than 1048576 bytes")
		if inc, _ := s.playbook.Incident(incidentID); inc.Commands[0].Status != actions.CommandHeld || inc.Commands[1].Status != actions.CommandHeld {
			t.Errorf("a refused approval released a command: %+v", inc.Commands)
		}
	})

	t.Run("command, then incident, then nothing left", func(t *testing.T) {
		s := newIncidentServer(t, nil)
		for _, step := range []struct {
			name, id string
			code     int
			approved []any
			msg      string
		}{
			{"unknown command", "d-9efbd2039229/flag_kill/nope", http.StatusNotFound, nil, `no incident or command "d-9efbd2039229/flag_kill/nope"`},
			{"unknown incident", "inc-d-000000000000", http.StatusNotFound, nil, `no incident or command "inc-d-000000000000"`},
			{"one command by its id", killNew, http.StatusOK, []any{killNew}, ""},
			{"the same command again", killNew, http.StatusConflict, nil, `nothing is waiting for approval in "` + killNew + `": it was approved already or never held`},
			{"the rest by the incident id", incidentID, http.StatusOK, []any{killFast}, ""},
			{"the incident again", incidentID, http.StatusConflict, nil, `nothing is waiting for approval in "` + incidentID + `": it was approved already or never held`},
		} {
			r := s.do(t, http.MethodPost, "/api/v1/approvals", `{"id":"`+step.id+`","by":"alice"}`)
			if step.code != http.StatusOK {
				checkError(t, r, step.code, step.msg)
				continue
			}
			if r.code != http.StatusOK {
				t.Fatalf("%s: %d %s", step.name, r.code, r.body)
			}
			if got := jsonBody(t, r); !reflect.DeepEqual(got, map[string]any{"approved": step.approved}) {
				t.Errorf("%s: body %v, want approved %v", step.name, got, step.approved)
			}
		}
		inc, _ := s.playbook.Incident(incidentID)
		for _, c := range inc.Commands {
			if c.ApprovedBy != "alice" || c.Status == actions.CommandHeld {
				t.Errorf("command %s: status %s, approved by %q", c.ID, c.Status, c.ApprovedBy)
			}
		}
		if inc.State != actions.StateContaining {
			t.Errorf("state %s after approval, want %s", inc.State, actions.StateContaining)
		}
	})
	t.Run("GET is not allowed", func(t *testing.T) {
		s := newIncidentServer(t, nil)
		if r := s.do(t, http.MethodGet, "/api/v1/approvals", ""); r.code != http.StatusMethodNotAllowed {
			t.Errorf("GET /api/v1/approvals: %d, want 405", r.code)
		}
	})
}

// TestApprovalsAuth: with credentials on the web listener, approving needs
// them as announcing a deployment does; reading incidents does too.
func TestApprovalsAuth(t *testing.T) {
	for _, tc := range []struct {
		name      string
		auth      configs.ServerConfig
		good, bad func(*http.Request)
	}{
		{"bearer", configs.ServerConfig{Authorization: &commoncfg.Authorization{Credentials: "s3cret"}},
			func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret") },
			func(r *http.Request) { r.Header.Set("Authorization", "Bearer guess") }},
		{"basic", configs.ServerConfig{BasicAuth: &commoncfg.BasicAuth{Username: "ops", Password: "hunter2"}},
			func(r *http.Request) { r.SetBasicAuth("ops", "hunter2") },
			func(r *http.Request) { r.SetBasicAuth("ops", "guess") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newIncidentServer(t, &tc.auth)
			send := func(method, path, body string, auth func(*http.Request)) (int, string) {
				req, _ := http.NewRequest(method, s.srv.URL+path, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				if auth != nil {
					auth(req)
				}
				resp, err := s.srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			body := `{"id":"` + incidentID + `","by":"alice"}`
			for _, req := range []struct {
				method, path, body string
			}{
				{http.MethodPost, "/api/v1/approvals", body},
				{http.MethodPost, "/api/v1/deployments", `{"service":"checkout","version":"v2","previous_version":"v1"}`},
				{http.MethodGet, "/api/v1/incidents/" + incidentID, ""},
				{http.MethodGet, "/api/v1/incidents/" + incidentID + "/postmortem", ""},
			} {
				for name, auth := range map[string]func(*http.Request){"none": nil, "wrong": tc.bad} {
					code, b := send(req.method, req.path, req.body, auth)
					if code != http.StatusUnauthorized || !strings.Contains(b, "missing or invalid credentials") {
						t.Errorf("%s %s with %s credentials: %d %s, want 401", req.method, req.path, name, code, b)
					}
				}
			}
			if inc, _ := s.playbook.Incident(incidentID); inc.Commands[0].Status != actions.CommandHeld {
				t.Fatalf("an unauthenticated approval released %s", inc.Commands[0].ID)
			}
			code, b := send(http.MethodPost, "/api/v1/approvals", body, tc.good)
			if code != http.StatusOK || !strings.Contains(b, killFast) || !strings.Contains(b, killNew) {
				t.Errorf("approval with credentials: %d %s", code, b)
			}
			if code, _ := send(http.MethodGet, "/api/v1/incidents/"+incidentID+"/postmortem", "", tc.good); code != http.StatusOK {
				t.Errorf("post-mortem with credentials: %d", code)
			}
		})
	}
}

// approvalsOnly answers approvals without state, so a fuzz input's outcome
// depends on the input alone: one command id approves, the incident id has
// nothing held, anything else is unknown.
type approvalsOnly struct{ by chan string }

func (approvalsOnly) Incidents() []actions.Incident            { return nil }
func (approvalsOnly) Incident(string) (actions.Incident, bool) { return actions.Incident{}, false }
func (approvalsOnly) Close(string, string, string) (actions.Incident, error) {
	return actions.Incident{}, actions.ErrNotFound
}
func (approvalsOnly) Ack(string, string, string) (actions.Incident, error) {
	return actions.Incident{}, actions.ErrNotFound
}
func (a approvalsOnly) Approve(id, by string) ([]string, error) {
	a.by <- by
	switch id {
	case killNew:
		return []string{killNew}, nil
	case incidentID:
		return nil, actions.ErrNothingToApprove
	}
	return nil, actions.ErrNotFound
}

// FuzzApprovals posts arbitrary bodies to POST /api/v1/approvals: never a
// panic nor a 5xx; a refusal is the JSON error shape; what reaches the
// playbook has an id and a short, printable approver.
func FuzzApprovals(f *testing.F) {
	for _, s := range []string{
		`{"id":"` + killNew + `","by":"alice"}`,
		`{"id":"` + incidentID + `","by":"alice"}`,
		`{"id":"nope","by":"alice"}`,
		`{"id":"` + killNew + `"}`,
		`{"id":"","by":"alice"}`,
		`{"id":"` + killNew + `","by":"a\u0000b"}`,
		`{"id":"` + killNew + `","by":"alice","x":1}`,
		`{"id":5}`,
		`{"id":"a"} {}`,
		"{\"id\":\"a\",\"by\":\"\xff\"}",
		`null`,
		`[]`,
		``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		by := make(chan string, 1)
		srv := httptest.NewServer(web.Handler(web.Options{Incidents: approvalsOnly{by: by}, MaxBodyBytes: 4096}))
		defer srv.Close()
		resp, err := srv.Client().Post(srv.URL+"/api/v1/approvals", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("status %d, body %q is not JSON", resp.StatusCode, b)
		}
		switch resp.StatusCode {
		case http.StatusOK:
			if !reflect.DeepEqual(m, map[string]any{"approved": []any{killNew}}) {
				t.Errorf("200 with %v", m)
			}
		case http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusRequestEntityTooLarge:
			if msg, _ := m["error"].(string); m["status"] != "error" || msg == "" {
				t.Errorf("%d with %v", resp.StatusCode, m)
			}
		default:
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		select {
		case who := <-by:
			if resp.StatusCode == http.StatusBadRequest {
				t.Errorf("a refused body reached the playbook")
			}
			if who == "" || len(who) > 128 || !utf8.ValidString(who) || strings.IndexFunc(who, unicode.IsControl) >= 0 {
				t.Errorf("approver %q reached the playbook", who)
			}
		default:
			if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Errorf("status %d without asking the playbook", resp.StatusCode)
			}
		}
	})
}

// TestUIPages: every page renders from the embedded templates with the
// incident's story; unknown ids are 404 pages; the assets are served.
func TestUIPages(t *testing.T) {
	s := newIncidentServer(t, nil)
	for _, tc := range []struct {
		path string
		code int
		has  []string
	}{
		{"/", 200, []string{`data-guard="checkout"`, `href="/incidents/` + incidentID + `"`, "◌ watching", `data-live="5000"`}},
		{"/incidents", 200, []string{incidentID}},
		{"/deployments", 200, []string{"<h1>Deployments</h1>"}},
		{"/incidents/" + incidentID, 200, []string{`data-command="` + killNew + `"`, "awaiting approval", `href="/incidents/` + incidentID + `/postmortem"`}},
		{"/incidents/" + incidentID + "/postmortem", 200, []string{"<table>", "Five whys", "Time to detect"}},
		{"/deployments/d-9efbd2039229", 200, []string{"Deployment d-9efbd2039229", "No chart history"}},
		{"/incidents/inc-nope", 404, []string{"rollguard knows no incident &#34;inc-nope&#34;"}},
		{"/deployments/d-nope", 404, []string{"no deployment"}},
		{"/ui/style.css", 200, []string{"Okabe"}},
		{"/ui/live.js", 200, []string{"data-live"}},
	} {
		r := s.do(t, http.MethodGet, tc.path, "")
		if r.code != tc.code {
			t.Errorf("GET %s: %d, want %d\n%s", tc.path, r.code, tc.code, r.body)
			continue
		}
		for _, want := range tc.has {
			if !strings.Contains(r.body, want) {
				t.Errorf("GET %s lacks %q", tc.path, want)
			}
		}
	}
	r := s.do(t, http.MethodGet, "/api/v1/deployments/d-nope/series", "")
	if r.code != http.StatusNotFound || !strings.Contains(r.body, `no deployment \"d-nope\"`) {
		t.Errorf("series of an unknown deployment: %d %s", r.code, r.body)
	}
}

// TestIncidentCloseAndAck: a person acknowledges, then closes the incident
// over the API; bad bodies get a 400 naming the problem, an unknown id 404,
// a second close 409; the incident page shows who and why.
func TestIncidentCloseAndAck(t *testing.T) {
	s := newIncidentServer(t, nil)
	base := "/api/v1/incidents/" + incidentID
	for _, tc := range []struct{ name, path, body, msg string }{
		{"empty", base + "/close", "", `the body is empty: send a JSON object like {"by":"alice","reason":"rolled forward by hand"}`},
		{"unknown field", base + "/close", `{"by":"alice","reason":"x","force":true}`, `decode decision: unknown field "force"`},
		{"no reason to close", base + "/close", `{"by":"alice"}`, "reason is required: say why the incident can close, it is recorded in the incident and the post-mortem"},
		{"no one", base + "/ack", `{"reason":"x"}`, "by is required: say who acknowledges, it is recorded in the incident"},
		{"by with a newline", base + "/close", `{"by":"a\nb","reason":"x"}`, "by must be printable UTF-8 text"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkError(t, s.do(t, http.MethodPost, tc.path, tc.body), http.StatusBadRequest, tc.msg)
		})
	}
	checkError(t, s.do(t, http.MethodPost, "/api/v1/incidents/inc-d-000000000000/ack", `{"by":"bob"}`), http.StatusNotFound, `no incident "inc-d-000000000000"`)
	if inc, _ := s.playbook.Incident(incidentID); !inc.Open() || inc.AckedBy != "" {
		t.Fatalf("refused decisions changed the incident: %+v", inc)
	}

	r := s.do(t, http.MethodPost, base+"/ack", `{"by":"bob","reason":"on it"}`)
	var inc actions.Incident
	if r.code != http.StatusOK || json.Unmarshal([]byte(r.body), &inc) != nil || inc.AckedBy != "bob" || !inc.Open() {
		t.Fatalf("ack: %d %s", r.code, r.body)
	}
	r = s.do(t, http.MethodPost, base+"/close", `{"by":"alice","reason":"rolled forward by hand"}`)
	if r.code != http.StatusOK || json.Unmarshal([]byte(r.body), &inc) != nil || inc.State != actions.StateClosed || inc.ClosedBy != "alice" {
		t.Fatalf("close: %d %s", r.code, r.body)
	}
	checkError(t, s.do(t, http.MethodPost, base+"/close", `{"by":"alice","reason":"again"}`), http.StatusConflict, `incident "`+incidentID+`" is closed already`)
	page := s.do(t, http.MethodGet, "/incidents/"+incidentID, "")
	for _, want := range []string{"by alice: rolled forward by hand", "UTC by bob", "cancelled"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("incident page lacks %q", want)
		}
	}
}

// TestAnnouncerAnswers: an Announcer's refusals are answered with their
// status and message — invalid is 400, unavailable 503 (the sender may
// retry) — and nothing else is a 201.
func TestAnnouncerAnswers(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
		msg  string
	}{
		{fmt.Errorf("%w: id %q is taken by an earlier deployment", detector.ErrInvalidDeployment, "d-1"), http.StatusBadRequest, `id "d-1" is taken by an earlier deployment`},
		{fmt.Errorf("%w: no replica owning a guard of checkout answered within 7s", web.ErrUnavailable), http.StatusServiceUnavailable, "no replica owning a guard of checkout answered within 7s"},
		{errors.New("disk on fire"), http.StatusInternalServerError, "disk on fire"},
		{nil, http.StatusCreated, ""},
	} {
		var got detector.Deployment
		srv := httptest.NewServer(web.Handler(web.Options{
			Announcer: web.AnnouncerFunc(func(_ context.Context, d detector.Deployment) (detector.Deployment, error) {
				got = d
				d.ID = "d-owner"
				return d, tc.err
			}),
		}))
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/deployments", strings.NewReader(`{"service":"checkout","version":"v2","flags":["f"]}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		srv.Close()
		switch {
		case resp.StatusCode != tc.code:
			t.Errorf("%v: HTTP %d, want %d", tc.err, resp.StatusCode, tc.code)
		case tc.err != nil && body["error"] != tc.msg:
			t.Errorf("%v: error %q, want %q", tc.err, body["error"], tc.msg)
		case tc.err == nil && (body["id"] != "d-owner" || got.Service != "checkout" || len(got.Flags) != 1):
			t.Errorf("answer %v, announcer got %+v", body, got)
		}
	}
}
