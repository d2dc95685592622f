package notify

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/actions/wire"
)

// TestPagerDutyEvents: each incident state maps to the documented
// Events API v2 action, one alert per incident (dedup_key = incident id).
// https://developer.pagerduty.com/docs/events-api-v2/trigger-events/
func TestPagerDutyEvents(t *testing.T) {
	d, err := NewPagerDuty(HTTPOptions{}, "R0UT1NGKEY", "http://rollguard:9469")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 5, 1, 2, 3, 0, time.UTC)
	status := func(state string) Notification {
		return Notification{Kind: KindStatus, Event: wire.Event{ID: "inc-d1/status/1", Time: at},
			Status: &wire.StatusData{IncidentID: "inc-d1", Seq: 1, Service: "checkout", Guard: "checkout-errors", State: state,
				Reason: "errors regressed", Internal: "[" + state + "] checkout"}}
	}
	for _, tc := range []struct {
		n        Notification
		action   string
		severity string
	}{
		{status(actions.StateWatching), "trigger", "error"},
		{status(actions.StateContaining), "trigger", "error"},
		{status(actions.StateRollingBack), "trigger", "error"},
		{status(actions.StateVerifying), "trigger", "error"},
		{status(actions.StateEscalated), "trigger", "critical"},
		{status(actions.StateStabilized), "resolve", ""},
		{status(actions.StateClosed), "resolve", ""},
		{Notification{Kind: KindIncident, Incident: &wire.IncidentData{IncidentID: "inc-d1", Event: "acknowledged", State: actions.StateContaining}}, "acknowledge", ""},
		{Notification{Kind: KindIncident, Incident: &wire.IncidentData{IncidentID: "inc-d1", Event: "opened", State: actions.StateWatching}}, "", ""},
	} {
		ev := d.Event(tc.n)
		if tc.action == "" {
			if ev != nil {
				t.Errorf("%+v: sent %+v, want nothing", tc.n.Incident, ev)
			}
			continue
		}
		if ev == nil || ev.EventAction != tc.action || ev.DedupKey != "inc-d1" || ev.RoutingKey != "R0UT1NGKEY" {
			t.Errorf("%s: %+v, want %s of inc-d1", tc.n.IncidentID(), ev, tc.action)
			continue
		}
		if tc.action != "trigger" {
			if ev.Payload != nil {
				t.Errorf("%s carries a payload", tc.action)
			}
			continue
		}
		p := ev.Payload
		if p.Summary != tc.n.Status.Internal || p.Severity != tc.severity || p.Source != "rollguard/checkout-errors" ||
			p.Timestamp != "2026-12-05T01:02:03Z" || p.CustomDetails["state"] != tc.n.Status.State {
			t.Errorf("payload %+v", p)
		}
		if len(ev.Links) != 1 || ev.Links[0].Href != "http://rollguard:9469/incidents/inc-d1" {
			t.Errorf("links %+v", ev.Links)
		}
	}
	if _, err := NewPagerDuty(HTTPOptions{}, "", ""); err == nil {
		t.Error("an empty routing key was accepted")
	}
}

// TestSlackMessage: the internal text, escaped as Slack asks, and a link
// to the incident page (https://api.slack.com/messaging/webhooks).
func TestSlackMessage(t *testing.T) {
	s, err := NewSlack(HTTPOptions{URL: "https://hooks.slack.com/services/T/B/X"}, "http://rollguard:9469/")
	if err != nil {
		t.Fatal(err)
	}
	m := s.Message(&wire.StatusData{IncidentID: "inc-d1", Internal: "[containing] checkout v1 -> v2: p99 <500ms & errors"})
	b, _ := json.Marshal(m)
	want := `{"text":"[containing] checkout v1 -\u0026gt; v2: p99 \u0026lt;500ms \u0026amp; errors\n\u003chttp://rollguard:9469/incidents/inc-d1|Incident inc-d1\u003e"}`
	if string(b) != want {
		t.Errorf("message\n%s\nwant\n%s", b, want)
	}
	if _, err := NewSlack(HTTPOptions{URL: "hooks.slack.com"}, ""); err == nil {
		t.Error("a URL without a scheme was accepted")
	}
}

// TestGrafanaAnnotation: an incident event is one annotation in the shape
// of Grafana's create-annotation API, with a bearer token
// (https://grafana.com/docs/grafana/latest/developers/http_api/annotations/#create-annotation);
// a status update is none.
func TestGrafanaAnnotation(t *testing.T) {
	ep := newEndpoint(t)
	g, err := NewGrafana(GrafanaOptions{URL: ep.URL + "/", Token: "glsa_123", DashboardUID: "dash", PanelID: 2, WebURL: "http://rollguard:9469"})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 5, 1, 2, 3, 0, time.UTC)
	n := Notification{Kind: KindIncident, Event: wire.Event{ID: "inc-d1/event/2", Time: at}, Incident: &wire.IncidentData{
		IncidentID: "inc-d1", Event: "state_changed", From: actions.StateContaining, State: actions.StateEscalated, Reason: "no result",
		Service: "checkout", Deployment: wire.Deployment{Version: "v2", PreviousVersion: "v1"}}}
	if err := g.Notify(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	if err := g.Notify(t.Context(), Notification{Kind: KindStatus, Status: &wire.StatusData{IncidentID: "inc-d1"}}); err != nil {
		t.Fatal(err)
	}
	want := `{"dashboardUID":"dash","panelId":2,"time":1796432523000,"tags":["rollguard","service:checkout","incident:inc-d1","state:escalated"],` +
		`"text":"rollguard checkout state changed: containing → escalated (v1 → v2) — no result http://rollguard:9469/incidents/inc-d1"}`
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if len(ep.bodies) != 1 || ep.bodies[0] != want {
		t.Errorf("posted %q\nwant %s", ep.bodies, want)
	}
	if ep.reqs[0] != "POST /api/annotations Bearer glsa_123" {
		t.Errorf("request %q", ep.reqs[0])
	}
}
