package gates

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/gates/argotest"
	"github.com/rollguard/rollguard/web"
)

func verdict(d detector.Deployment, s detector.State) *detector.GuardVerdict {
	return &detector.GuardVerdict{Deployment: d, State: s, Signals: []detector.Evidence{{Signal: "errors", State: s, Reason: "r"}}}
}

// TestDecide is the gate's rule: success on healthy or promoted, failure
// on regressed, inconclusive otherwise; no data is never a success.
func TestDecide(t *testing.T) {
	now := time.Now()
	dep := detector.Deployment{ID: "d1", Service: "checkout", Version: "v2", PreviousVersion: "v1"}
	promoted, superseded := dep, dep
	promoted.EndedAt, promoted.EndReason = &now, "promoted"
	superseded.EndedAt, superseded.EndReason, superseded.SupersededBy = &now, "superseded", "d2"
	other := dep
	other.ID = "d0"
	guard := func(name string, v *detector.GuardVerdict) detector.GuardStatus {
		return detector.GuardStatus{Name: name, Service: "checkout", Verdict: v}
	}
	for _, tc := range []struct {
		name    string
		s       Standing
		state   State
		outcome Outcome
	}{
		{"no deployment", Standing{Service: "checkout"}, StateNoData, Inconclusive},
		{"no deployment of the version", Standing{Service: "checkout", Version: "v3"}, StateNoData, Inconclusive},
		{"no guard", Standing{Service: "checkout", Deployment: &dep}, StateNoData, Inconclusive},
		{"no verdict yet", Standing{Service: "checkout", Deployment: &dep, Guards: []detector.GuardStatus{guard("a", nil)}}, StateNoData, Inconclusive},
		{"a verdict on another deployment", Standing{Deployment: &dep, Guards: []detector.GuardStatus{guard("a", verdict(other, detector.StateHealthy))}}, StateNoData, Inconclusive},
		{"healthy", Standing{Deployment: &dep, Guards: []detector.GuardStatus{guard("a", verdict(dep, detector.StateHealthy))}}, StateHealthy, Success},
		{"regressed", Standing{Deployment: &dep, Guards: []detector.GuardStatus{guard("a", verdict(dep, detector.StateRegressed))}}, StateRegressed, Failure},
		{"inconclusive", Standing{Deployment: &dep, Guards: []detector.GuardStatus{guard("a", verdict(dep, detector.StateInconclusive))}}, StateInconclusive, Inconclusive},
		{"no data", Standing{Deployment: &dep, Guards: []detector.GuardStatus{guard("a", verdict(dep, detector.StateNoData))}}, StateNoData, Inconclusive},
		{"healthy and no data", Standing{Deployment: &dep, Guards: []detector.GuardStatus{
			guard("a", verdict(dep, detector.StateHealthy)), guard("b", verdict(dep, detector.StateNoData))}}, StateNoData, Inconclusive},
		{"healthy and inconclusive", Standing{Deployment: &dep, Guards: []detector.GuardStatus{
			guard("a", verdict(dep, detector.StateHealthy)), guard("b", verdict(dep, detector.StateInconclusive))}}, StateInconclusive, Inconclusive},
		{"no data and regressed", Standing{Deployment: &dep, Guards: []detector.GuardStatus{
			guard("a", verdict(dep, detector.StateNoData)), guard("b", verdict(dep, detector.StateRegressed))}}, StateRegressed, Failure},
		{"promoted", Standing{Deployment: &promoted}, StatePromoted, Success},
		{"superseded", Standing{Deployment: &superseded}, StateInconclusive, Inconclusive},
	} {
		g := Decide(tc.s)
		if g.State != tc.state || g.Outcome != tc.outcome || g.Reason == "" || g.Evidence == nil {
			t.Errorf("%s: %s/%s (%q), want %s/%s", tc.name, g.State, g.Outcome, g.Reason, tc.state, tc.outcome)
		}
	}
}

type source struct {
	deps   []detector.Deployment
	guards []detector.GuardStatus
}

func (s source) Deployments() []detector.Deployment { return s.deps }
func (s source) Guards() []detector.GuardStatus     { return s.guards }

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// The AnalysisTemplate's conditions (docs/integrations.md, "Argo Rollouts").
const (
	argoSuccess = "result.outcome == 'success'"
	argoFailure = "result.outcome == 'failure'"
	// The same rule spelt on the state, as a user might write it.
	argoStateSuccess = "result.state == 'healthy' || result.state == 'promoted'"
	argoStateFailure = "result.state == 'regressed'"
)

// TestArgoContract measures the gate as Argo's web provider does, and
// checks the exact JSON shape it parses.
func TestArgoContract(t *testing.T) {
	now := time.Now()
	v2 := detector.Deployment{ID: "d2", Service: "checkout", Version: "v2", PreviousVersion: "v1"}
	v1 := detector.Deployment{ID: "d1", Service: "checkout", Version: "v1", PreviousVersion: "v0", EndedAt: &now, EndReason: "promoted"}
	bad := detector.Deployment{ID: "d3", Service: "payments", Version: "v9", PreviousVersion: "v8"}
	src := source{deps: []detector.Deployment{v2, bad, v1}, guards: []detector.GuardStatus{
		{Name: "checkout", Service: "checkout", Verdict: verdict(v2, detector.StateHealthy)},
		{Name: "payments", Service: "payments", Verdict: verdict(bad, detector.StateRegressed)},
		{Name: "search", Service: "search"},
	}}
	srv := httptest.NewServer(Mount(http.NotFoundHandler(), Options{Source: src}))
	defer srv.Close()
	for _, tc := range []struct {
		query, state, phase string
	}{
		{"service=checkout", "healthy", argotest.Successful},
		{"service=checkout&version=v2", "healthy", argotest.Successful},
		{"service=checkout&version=v1", "promoted", argotest.Successful},
		{"deployment=d1", "promoted", argotest.Successful},
		{"service=checkout&version=v3", "no_data", argotest.Inconclusive},
		{"service=payments", "regressed", argotest.Failed},
		{"service=search", "no_data", argotest.Inconclusive},
		{"service=nothing", "no_data", argotest.Inconclusive},
	} {
		for _, cond := range [][2]string{{argoSuccess, argoFailure}, {argoStateSuccess, argoStateFailure}} {
			phase, result, err := argotest.Measure(srv.Client(), argotest.Metric{URL: srv.URL + "/api/v1/gates/argo?" + tc.query,
				SuccessCondition: cond[0], FailureCondition: cond[1]})
			if err != nil {
				t.Fatalf("%s: %v", tc.query, err)
			}
			m := result.(map[string]any)
			if phase != tc.phase || m["state"] != tc.state {
				t.Errorf("%s with %q: %s %v, want %s %s", tc.query, cond[0], phase, m["state"], tc.phase, tc.state)
			}
			want := []string{"deployment", "evidence", "outcome", "reason", "state"}
			if m["deployment"] == nil {
				want = []string{"evidence", "outcome", "reason", "state"}
			}
			if got := keys(m); !reflect.DeepEqual(got, want) {
				t.Errorf("%s: keys %v, want %v", tc.query, got, want)
			}
		}
	}
	// The evidence summary, in the detector's words.
	_, result, _ := argotest.Measure(srv.Client(), argotest.Metric{URL: srv.URL + "/api/v1/gates/argo?service=payments"})
	ev := result.(map[string]any)["evidence"].([]any)[0].(map[string]any)
	if got := keys(ev); !reflect.DeepEqual(got, []string{"guard", "signal", "state", "summary"}) || ev["summary"] != detector.Describe(verdict(bad, detector.StateRegressed).Signals[0]) {
		t.Errorf("evidence %v", ev)
	}
	if dep := result.(map[string]any)["deployment"].(map[string]any); dep["id"] != "d3" || dep["version"] != "v9" {
		t.Errorf("deployment %v", dep)
	}
	// Misuse is an Error measurement, with the reason.
	for q, want := range map[string]string{"": "400", "deployment=nope": "404"} {
		if phase, _, err := argotest.Measure(srv.Client(), argotest.Metric{URL: srv.URL + "/api/v1/gates/argo?" + q,
			SuccessCondition: argoSuccess}); phase != argotest.Error || !strings.Contains(fmt.Sprint(err), want) {
			t.Errorf("?%s: %s %v", q, phase, err)
		}
	}
	// Mount leaves the rest to the next handler.
	if resp, err := srv.Client().Get(srv.URL + "/api/v1/guards"); err != nil || resp.StatusCode != 404 {
		t.Errorf("next handler: %v %v", resp, err)
	}
}

func post(t *testing.T, url, ct, body string, hdr ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", ct)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %d %s", url, resp.StatusCode, b)
	}
	return resp.StatusCode, m
}

// TestFlaggerContract: Flagger's webhook payload
// (https://docs.flagger.app/usage/webhooks) gets 200 from confirm-promotion
// only on success and from rollback only on failure; an event announces.
func TestFlaggerContract(t *testing.T) {
	v2 := detector.Deployment{ID: "d2", Service: "checkout", Version: "v2", PreviousVersion: "v1"}
	bad := detector.Deployment{ID: "d3", Service: "payments", Version: "v9", PreviousVersion: "v8"}
	src := source{deps: []detector.Deployment{v2, bad}, guards: []detector.GuardStatus{
		{Name: "checkout", Service: "checkout", Verdict: verdict(v2, detector.StateHealthy)},
		{Name: "payments", Service: "payments", Verdict: verdict(bad, detector.StateRegressed)},
	}}
	var announced []detector.Deployment
	ann := web.AnnouncerFunc(func(_ context.Context, d detector.Deployment) (detector.Deployment, error) {
		if d.PreviousVersion == "" {
			return d, fmt.Errorf("%w: previous_version is required", detector.ErrInvalidDeployment)
		}
		d.ID = "new"
		announced = append(announced, d)
		return d, nil
	})
	srv := httptest.NewServer(Handler(Options{Source: src, Announcer: ann}))
	defer srv.Close()
	payload := func(name, phase, meta string) string {
		return fmt.Sprintf(`{"name":%q,"namespace":"shop","phase":%q,"checksum":"6d6c4b9d","type":"confirm-promotion","canaryWeight":20,"metadata":{%s}}`, name, phase, meta)
	}
	for _, tc := range []struct {
		hook, body string
		code       int
		state      string
	}{
		{"confirm-promotion", payload("checkout", "Promoting", ""), 200, "healthy"},
		{"confirm-promotion", payload("checkout-canary", "Promoting", `"service":"checkout","version":"v2"`), 200, "healthy"},
		{"confirm-promotion", payload("checkout", "Promoting", `"version":"v3"`), 403, "no_data"},
		{"confirm-promotion", payload("payments", "Promoting", ""), 403, "regressed"},
		{"confirm-promotion", payload("search", "Promoting", ""), 403, "no_data"},
		{"rollback", payload("payments", "Progressing", ""), 200, "regressed"},
		{"rollback", payload("checkout", "Progressing", ""), 403, "healthy"},
		{"rollback", payload("search", "Waiting", ""), 403, "no_data"},
	} {
		code, m := post(t, srv.URL+"/api/v1/gates/flagger/"+tc.hook, "application/json", tc.body)
		if code != tc.code || m["state"] != tc.state {
			t.Errorf("%s %s: %d %v, want %d %s", tc.hook, tc.body, code, m["state"], tc.code, tc.state)
		}
	}
	// Events: a Progressing event with a version announces; others are ignored.
	code, m := post(t, srv.URL+"/api/v1/gates/flagger/event", "application/json",
		payload("checkout", "Progressing", `"eventMessage":"Advance checkout.shop canary weight 20","eventType":"Normal","timestamp":"1700000000000","version":"v3","previous_version":"v2","flags":"a, b,"`))
	if code != 202 || m["status"] != "announced" || len(announced) != 1 {
		t.Fatalf("event: %d %v", code, m)
	}
	if d := announced[0]; d.Service != "checkout" || d.Version != "v3" || d.PreviousVersion != "v2" || d.Weight != 20 || d.Strategy != "canary" || !reflect.DeepEqual(d.Flags, []string{"a", "b"}) {
		t.Errorf("announced %+v", d)
	}
	// The weight from the metadata, as newer Flagger releases also send it.
	if code, m := post(t, srv.URL+"/api/v1/gates/flagger/event", "application/json",
		`{"name":"checkout","namespace":"shop","phase":"Progressing","metadata":{"canaryWeight":"30","version":"v3","previous_version":"v2"}}`); code != 202 || announced[1].Weight != 30 {
		t.Errorf("event with the weight in metadata: %d %v %+v", code, m, announced)
	}
	if code, m := post(t, srv.URL+"/api/v1/gates/flagger/event", "application/json", payload("checkout", "Succeeded", `"version":"v3"`)); code != 202 || m["status"] != "ignored" {
		t.Errorf("succeeded event: %d %v", code, m)
	}
	if code, m := post(t, srv.URL+"/api/v1/gates/flagger/event", "application/json", payload("checkout", "Progressing", `"version":"v3"`)); code != 400 || !strings.Contains(fmt.Sprint(m["error"]), "previous_version") {
		t.Errorf("refused announcement: %d %v", code, m)
	}
	// The web API's rules: JSON only, no cross-origin browser requests.
	if code, _ := post(t, srv.URL+"/api/v1/gates/flagger/rollback", "text/plain", payload("payments", "Progressing", "")); code != 415 {
		t.Errorf("text/plain: %d", code)
	}
	if code, _ := post(t, srv.URL+"/api/v1/gates/flagger/rollback", "application/json", payload("payments", "Progressing", ""), "Sec-Fetch-Site", "cross-site"); code != 403 {
		t.Errorf("cross-site: %d", code)
	}
	for _, body := range []string{`{"name":`, `{"namespace":"shop"}`} {
		if code, _ := post(t, srv.URL+"/api/v1/gates/flagger/rollback", "application/json", body); code != 400 {
			t.Errorf("%s: %d", body, code)
		}
	}
}

// TestUnknownGate: a path under the gates that is none of them is a JSON 404
// that lists them.
func TestUnknownGate(t *testing.T) {
	srv := httptest.NewServer(Handler(Options{Source: source{}}))
	defer srv.Close()
	code, m := post(t, srv.URL+"/api/v1/gates/spinnaker", "application/json", `{}`)
	if code != 404 || !strings.Contains(fmt.Sprint(m["error"]), "GET /api/v1/gates/argo") {
		t.Errorf("%d %v", code, m)
	}
}

// FuzzFlaggerWebhook: whatever body a webhook gets, the answer is a gate's
// or a 4xx, never a 5xx or a panic.
func FuzzFlaggerWebhook(f *testing.F) {
	f.Add("rollback", `{"name":"checkout","namespace":"shop","phase":"Progressing","metadata":{"version":"v2"}}`)
	f.Add("event", `{"name":"checkout","phase":"Progressing","canaryWeight":10,"metadata":{"version":"v3","previous_version":"v2","flags":"a,,b"}}`)
	f.Add("confirm-promotion", `{"name":"","metadata":{"service":"x"}}`)
	f.Add("event", `{"name":"c","phase":"Progressing","metadata":{"canaryWeight":"NaN","version":"v"}}`)
	v2 := detector.Deployment{ID: "d2", Service: "checkout", Version: "v2", PreviousVersion: "v1"}
	src := source{deps: []detector.Deployment{v2}, guards: []detector.GuardStatus{{Name: "checkout", Service: "checkout", Verdict: verdict(v2, detector.StateRegressed)}}}
	ann := web.AnnouncerFunc(func(_ context.Context, d detector.Deployment) (detector.Deployment, error) {
		if _, err := json.Marshal(d); err != nil {
			return d, fmt.Errorf("%w: %v", detector.ErrInvalidDeployment, err)
		}
		return d, nil
	})
	h := Handler(Options{Source: src, Announcer: ann})
	f.Fuzz(func(t *testing.T, hook, body string) {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/gates/flagger/"+url.PathEscape(hook), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 || !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %q: %d %s", hook, body, rec.Code, rec.Body)
		}
	})
}
