package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// PagerDutyURL is the Events API v2 endpoint.
const PagerDutyURL = "https://events.pagerduty.com/v2/enqueue"

// PagerDuty sends PagerDuty Events API v2 events, one PagerDuty alert per
// incident (dedup_key = the incident id, so an event sent twice lands on the
// same alert):
//   - a status update of an open incident (watching, containing,
//     rolling_back, verifying, escalated) triggers, with the status text as
//     summary — a trigger on an open alert only adds to its log;
//   - the incident event "acknowledged" (a person took it in hand) acknowledges;
//   - a status update in stabilized or closed resolves.
//
// Request shape: https://developer.pagerduty.com/docs/events-api-v2/trigger-events/
// (POST /v2/enqueue, {routing_key, event_action, dedup_key, payload{summary,
// source, severity, timestamp, component, group, custom_details}, links}) and
// https://developer.pagerduty.com/docs/events-api-v2/acknowledge-events/,
// .../resolve-events/ (routing_key, event_action, dedup_key only). 202 is
// accepted; 400 is a permanent refusal; 429 and 5xx are retried.
type PagerDuty struct {
	p          poster
	routingKey string
	webURL     string
}

// NewPagerDuty sends to o.URL (default PagerDutyURL) with the integration's
// routing key; webURL is rollguard's web UI base, or "".
func NewPagerDuty(o HTTPOptions, routingKey, webURL string) (*PagerDuty, error) {
	if routingKey == "" {
		return nil, fmt.Errorf("pagerduty driver: the routing key (integration key) is empty")
	}
	if o.URL == "" {
		o.URL = PagerDutyURL
	}
	p, err := newPoster("pagerduty", o)
	if err != nil {
		return nil, err
	}
	return &PagerDuty{p: p, routingKey: routingKey, webURL: webURL}, nil
}

// Name is "pagerduty".
func (d *PagerDuty) Name() string { return "pagerduty" }

// PagerDutyEvent is an Events API v2 request body.
type PagerDutyEvent struct {
	RoutingKey  string            `json:"routing_key"`
	EventAction string            `json:"event_action"`
	DedupKey    string            `json:"dedup_key"`
	Payload     *PagerDutyPayload `json:"payload,omitempty"`
	Links       []PagerDutyLink   `json:"links,omitempty"`
	Client      string            `json:"client,omitempty"`
	ClientURL   string            `json:"client_url,omitempty"`
}

// PagerDutyPayload is a trigger's payload.
type PagerDutyPayload struct {
	Summary       string         `json:"summary"`
	Source        string         `json:"source"`
	Severity      string         `json:"severity"`
	Timestamp     string         `json:"timestamp,omitempty"`
	Component     string         `json:"component,omitempty"`
	Group         string         `json:"group,omitempty"`
	Class         string         `json:"class,omitempty"`
	CustomDetails map[string]any `json:"custom_details,omitempty"`
}

// PagerDutyLink is a link shown on the alert.
type PagerDutyLink struct {
	Href string `json:"href"`
	Text string `json:"text"`
}

// Event is the Events API request for a notification, or nil when there
// is nothing to send for it.
func (d *PagerDuty) Event(n Notification) *PagerDutyEvent {
	switch {
	case n.Incident != nil && n.Incident.Event == "acknowledged":
		return &PagerDutyEvent{RoutingKey: d.routingKey, EventAction: "acknowledge", DedupKey: n.Incident.IncidentID}
	case n.Status == nil:
		return nil
	case !Open(n.Status.State):
		return &PagerDutyEvent{RoutingKey: d.routingKey, EventAction: "resolve", DedupKey: n.Status.IncidentID}
	}
	s := n.Status
	details := map[string]any{"incident_id": s.IncidentID, "state": s.State, "reason": s.Reason,
		"service": s.Service, "guard": s.Guard, "status": s.Internal, "status_seq": s.Seq}
	if !s.NextUpdate.IsZero() {
		details["next_update"] = s.NextUpdate.UTC().Format(time.RFC3339)
	}
	summary := s.Internal
	if strings.TrimSpace(summary) == "" { // PagerDuty refuses an empty summary; a template may render one
		summary = fmt.Sprintf("[%s] %s (incident %s): %s", s.State, s.Service, s.IncidentID, s.Reason)
	}
	ev := &PagerDutyEvent{RoutingKey: d.routingKey, EventAction: "trigger", DedupKey: s.IncidentID, Client: "rollguard",
		Payload: &PagerDutyPayload{Summary: truncate(summary, 1024), Source: "rollguard/" + s.Guard, Severity: Severity(s.State),
			Timestamp: n.Event.Time.UTC().Format(time.RFC3339Nano), Component: s.Service, Group: s.Guard, Class: "deployment regression",
			CustomDetails: details}}
	if u := IncidentURL(d.webURL, s.IncidentID); u != "" {
		ev.ClientURL = u
		ev.Links = []PagerDutyLink{{Href: u, Text: "Incident " + s.IncidentID}}
	}
	return ev
}

// Notify sends the event for n, if any.
func (d *PagerDuty) Notify(ctx context.Context, n Notification) error {
	ev := d.Event(n)
	if ev == nil {
		return nil
	}
	b, _ := json.Marshal(ev)
	if err := d.p.post(ctx, "", "application/json", b); err != nil {
		return fmt.Errorf("pagerduty %s %s: %w", ev.EventAction, ev.DedupKey, err)
	}
	return nil
}
