package web_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
		Ready:        s.ready.Load,
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
	if body != "" {
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
		{"not ready", http.MethodGet, "/-/ready", false, http.StatusServiceUnavailable, "rollguard is not ready.\n"},
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
