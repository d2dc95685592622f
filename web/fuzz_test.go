package web_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/web"
)

// FuzzAnnounce posts arbitrary bodies to POST /api/v1/deployments. The
// handler must never panic nor answer 5xx; a 201 carries a deployment of the
// guarded service, anything else the JSON error shape with a message. Each
// input gets a fresh engine, so a failure reproduces from the input alone.
func FuzzAnnounce(f *testing.F) {
	for _, s := range []string{
		`{"service":"checkout","version":"v2","previous_version":"v1"}`,
		`{"id":"release-42","service":"checkout","version":"v2","previous_version":"v1","commit":"abc","previous_commit":"def","flags":["fast-pay"],"migration":"irreversible","strategy":"canary"}`,
		`{"service":"checkout","version":"v2"}`,
		`{"service":"checkout","version":"v1","previous_version":"v1"}`,
		`{"service":"cart","version":"v2","previous_version":"v1"}`,
		`{"service":"checkout","version":"v2","previous_version":"v1","flags":[]}`,
		`{"service":"checkout","version":"v2","previous_version":"v1","flags":[" "]}`,
		`{"service":"checkout","version":"v2","previous_version":"v1","migration":"maybe"}`,
		`{"service":"checkout","version":"v2","previous_version":"v1"} {}`,
		`{"service":5}`,
		`{"service":"checkout",}`,
		`{"service":"checkout"`,
		`{"colour":"red"}`,
		"{\"service\":\"checkout\",\"version\":\"\xff\",\"previous_version\":\"v1\"}",
		`null`,
		`[]`,
		``,
		`{"service":"checkout","version":"v2","previous_version":"v1","commit":"` + strings.Repeat("a", 2048) + `"}`,
	} {
		f.Add([]byte(s))
	}
	cfg, err := configs.Parse([]byte(apiConfig))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		engine := detector.NewEngine(cfg, detector.EngineOptions{Now: func() time.Time { return apiNow }})
		h := web.Handler(web.Options{
			Deployments:  engine,
			Incidents:    actions.NewPlaybook(actions.PlaybookOptions{}),
			Reload:       func() error { return nil },
			Gatherer:     prometheus.NewRegistry(),
			MaxBodyBytes: 1024,
		})
		req := httptest.NewRequest(http.MethodPost, "/api/v1/deployments", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch code := rec.Code; {
		case code >= 500:
			t.Fatalf("status %d: %s", code, rec.Body)
		case code == http.StatusCreated:
			var d detector.Deployment
			if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
				t.Fatalf("201 with a body that is not a deployment: %v: %s", err, rec.Body)
			}
			if d.ID == "" || d.Service != "checkout" || d.Version == "" || d.PreviousVersion == "" ||
				d.Version == d.PreviousVersion || d.Source != "api" || d.Migration == "" {
				t.Fatalf("201 with an invalid deployment %+v", d)
			}
			if got := engine.Deployments(); len(got) != 1 || got[0].ID != d.ID {
				t.Fatalf("201 for %s, but the engine lists %+v", d.ID, got)
			}
		case code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge:
			var e map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e["status"] != "error" || e["error"] == "" || len(e) != 2 {
				t.Fatalf("status %d with body %s: want {\"status\":\"error\",\"error\":...} (%v)", code, rec.Body, err)
			}
			if got := engine.Deployments(); len(got) != 0 {
				t.Fatalf("status %d, but the engine lists %+v", code, got)
			}
		default:
			t.Fatalf("unexpected status %d: %s", code, rec.Body)
		}
	})
}
