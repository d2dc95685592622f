package web_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	commoncfg "github.com/prometheus/common/config"

	"github.com/rollguard/rollguard/configs"
)

// send makes one request with exactly the headers given: what a browser or
// a program would send.
func (s *apiServer) send(t *testing.T, method, path, body string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const announcement = `{"service":"checkout","version":"v2","previous_version":"v1"}`

// TestCrossOrigin: a state-changing request a browser sends from another
// site is refused before it changes anything, whatever its content type;
// the same requests from rollguard's own origin, or from a program, go
// through, and so do reads.
func TestCrossOrigin(t *testing.T) {
	s := newAPIServer(t, 0)
	evil := map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"}
	evilJSON := map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}
	// A browser that predates Sec-Fetch-Site still sends Origin.
	oldBrowser := map[string]string{"Origin": "https://evil.example", "Content-Type": "text/plain"}
	for _, tc := range []struct {
		name, path, body string
		header           map[string]string
	}{
		{"announce text/plain", "/api/v1/deployments", announcement, evil},
		{"announce json", "/api/v1/deployments", announcement, evilJSON},
		{"announce from an old browser", "/api/v1/deployments", announcement, oldBrowser},
		{"reload", "/-/reload", "", evil},
		{"approve", "/api/v1/approvals", `{"id":"inc-d-3fa2b1c0d4e5","by":"mallory"}`, evil},
		{"close", "/api/v1/incidents/inc-d-3fa2b1c0d4e5/close", `{"by":"mallory","reason":"x"}`, evil},
		{"ack", "/api/v1/incidents/inc-d-3fa2b1c0d4e5/ack", `{"by":"mallory"}`, evil},
	} {
		code, body := s.send(t, http.MethodPost, tc.path, tc.body, tc.header)
		if code != http.StatusForbidden || !strings.Contains(body, "cross-origin POST refused") || !strings.Contains(body, "https://evil.example") {
			t.Errorf("%s: %d %s, want 403 naming the origin", tc.name, code, body)
		}
	}
	if d := s.engine.Deployments(); len(d) != 0 {
		t.Fatalf("a cross-origin request announced %v", d)
	}
	if n := s.reloads.Load(); n != 0 {
		t.Fatalf("a cross-origin request reloaded the configuration %d times", n)
	}

	// Healthy twins: a read from anywhere, a program (no browser headers)
	// and rollguard's own pages.
	if code, body := s.send(t, http.MethodGet, "/api/v1/guards", "", map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}); code != http.StatusOK {
		t.Errorf("cross-origin GET: %d %s", code, body)
	}
	if code, body := s.send(t, http.MethodPost, "/api/v1/deployments", announcement, map[string]string{"Content-Type": "application/json"}); code != http.StatusCreated {
		t.Errorf("announcement from a program: %d %s", code, body)
	}
	same := map[string]string{"Origin": s.srv.URL, "Sec-Fetch-Site": "same-origin", "Content-Type": "application/json"}
	if code, body := s.send(t, http.MethodPost, "/api/v1/deployments", `{"service":"checkout","version":"v3","previous_version":"v2"}`, same); code != http.StatusCreated {
		t.Errorf("same-origin announcement: %d %s", code, body)
	}
	if code, body := s.send(t, http.MethodPost, "/-/reload", "", same); code != http.StatusOK {
		t.Errorf("same-origin reload: %d %s", code, body)
	}
	if n := s.reloads.Load(); n != 1 {
		t.Errorf("%d reloads, want 1", n)
	}
}

// TestJSONContentType: an endpoint that reads a JSON body refuses, with 415
// and before reading it, a body that does not say it is JSON: a form or
// text/plain POST is what a forging page can send without asking first.
func TestJSONContentType(t *testing.T) {
	s := newAPIServer(t, 0)
	endpoints := []struct{ path, body string }{
		{"/api/v1/deployments", announcement},
		{"/api/v1/approvals", `{"id":"inc-d-3fa2b1c0d4e5","by":"alice"}`},
		{"/api/v1/incidents/inc-d-3fa2b1c0d4e5/close", `{"by":"alice","reason":"rolled forward"}`},
		{"/api/v1/incidents/inc-d-3fa2b1c0d4e5/ack", `{"by":"alice"}`},
	}
	for _, e := range endpoints {
		for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/jsonx", "not a type"} {
			header := map[string]string{}
			if ct != "" {
				header["Content-Type"] = ct
			}
			code, body := s.send(t, http.MethodPost, e.path, e.body, header)
			want := `"Content-Type \"` + strings.ReplaceAll(ct, `"`, `\"`) + `\" is not accepted: send the body as JSON with Content-Type: application/json"`
			if code != http.StatusUnsupportedMediaType || !strings.Contains(body, want) {
				t.Errorf("POST %s as %q: %d %s, want 415 %s", e.path, ct, code, body, want)
			}
		}
	}
	if d := s.engine.Deployments(); len(d) != 0 {
		t.Fatalf("a body that is not JSON announced %v", d)
	}
	// Healthy twin: JSON, with or without a charset, reaches the handler
	// (the incident is unknown here, hence 404).
	for _, e := range endpoints {
		code, body := s.send(t, http.MethodPost, e.path, e.body, map[string]string{"Content-Type": "application/json; charset=utf-8"})
		if want := map[bool]int{true: http.StatusCreated, false: http.StatusNotFound}[e.path == "/api/v1/deployments"]; code != want {
			t.Errorf("POST %s as JSON: %d %s, want %d", e.path, code, body, want)
		}
	}
}

// TestPprofAuth: the profiles need the web listener's credentials, like the
// API; with them they are served.
func TestPprofAuth(t *testing.T) {
	s := newIncidentServer(t, &configs.ServerConfig{BasicAuth: &commoncfg.BasicAuth{Username: "ops", Password: "hunter2"}})
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/symbol"} {
		for _, tc := range []struct {
			name string
			auth func(*http.Request)
			want int
		}{
			{"none", func(*http.Request) {}, http.StatusUnauthorized},
			{"wrong", func(r *http.Request) { r.SetBasicAuth("ops", "guess") }, http.StatusUnauthorized},
			{"right", func(r *http.Request) { r.SetBasicAuth("ops", "hunter2") }, http.StatusOK},
		} {
			req, _ := http.NewRequest(http.MethodGet, s.srv.URL+path, nil)
			tc.auth(req)
			resp, err := s.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("GET %s with %s credentials: %d, want %d", path, tc.name, resp.StatusCode, tc.want)
			}
			if tc.want == http.StatusUnauthorized && strings.Contains(string(b), "goroutine") {
				t.Errorf("GET %s with %s credentials leaked a profile", path, tc.name)
			}
		}
	}
}
