package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Grafana marks each incident event (opened, state_changed, acknowledged,
// closed) on Grafana's dashboards: one annotation each, tagged so that a
// dashboard's annotation query picks rollguard's out (tags rollguard,
// service:<service>, incident:<id>, state:<state>). Status updates add
// nothing: the periodic ones would clutter the graphs.
//
// Request shape: https://grafana.com/docs/grafana/latest/developers/http_api/annotations/#create-annotation
// (POST /api/annotations, {dashboardUID, panelId, time, tags, text}, time in
// epoch milliseconds; without a dashboard it is an organization annotation,
// shown where a query asks for its tags), authenticated with a service
// account token as a bearer token.
type Grafana struct {
	p            poster
	dashboardUID string
	panelID      int64
	webURL       string
}

// GrafanaOptions configure the Grafana driver.
type GrafanaOptions struct {
	// URL is Grafana's base URL, like http://grafana:3000.
	URL string
	// Token is a service account token with annotations:write.
	Token string
	// DashboardUID and PanelID pin the annotations to one dashboard and
	// panel; empty and 0 make organization annotations.
	DashboardUID string
	PanelID      int64
	HTTP         HTTPOptions
	WebURL       string
}

// NewGrafana checks the options.
func NewGrafana(o GrafanaOptions) (*Grafana, error) {
	if o.URL == "" {
		return nil, errors.New("grafana driver: no Grafana URL")
	}
	h := o.HTTP
	h.URL = strings.TrimRight(o.URL, "/") + "/api/annotations"
	h.Header = h.Header.Clone()
	if o.Token != "" {
		if h.Header == nil {
			h.Header = map[string][]string{}
		}
		h.Header.Set("Authorization", "Bearer "+o.Token)
	}
	p, err := newPoster("grafana", h)
	if err != nil {
		return nil, err
	}
	return &Grafana{p: p, dashboardUID: o.DashboardUID, panelID: o.PanelID, webURL: o.WebURL}, nil
}

// Name is "grafana".
func (g *Grafana) Name() string { return "grafana" }

// GrafanaAnnotation is the body of POST /api/annotations.
type GrafanaAnnotation struct {
	DashboardUID string   `json:"dashboardUID,omitempty"`
	PanelID      int64    `json:"panelId,omitempty"`
	Time         int64    `json:"time"`
	Tags         []string `json:"tags"`
	Text         string   `json:"text"`
}

// Annotation is what Notify posts for an incident event, or nil.
func (g *Grafana) Annotation(n Notification) *GrafanaAnnotation {
	e := n.Incident
	if e == nil {
		return nil
	}
	text := fmt.Sprintf("rollguard %s %s: %s", e.Service, strings.ReplaceAll(e.Event, "_", " "), e.State)
	if e.From != "" && e.From != e.State {
		text = fmt.Sprintf("rollguard %s %s: %s → %s", e.Service, strings.ReplaceAll(e.Event, "_", " "), e.From, e.State)
	}
	if d := e.Deployment; d.Version != "" {
		text += fmt.Sprintf(" (%s → %s)", d.PreviousVersion, d.Version)
	}
	if e.Reason != "" {
		text += " — " + e.Reason
	}
	if u := IncidentURL(g.webURL, e.IncidentID); u != "" {
		text += " " + u
	}
	return &GrafanaAnnotation{DashboardUID: g.dashboardUID, PanelID: g.panelID, Time: n.Event.Time.UnixMilli(),
		Tags: []string{"rollguard", "service:" + e.Service, "incident:" + e.IncidentID, "state:" + e.State}, Text: text}
}

// Notify posts the annotation of an incident event; status updates add nothing.
func (g *Grafana) Notify(ctx context.Context, n Notification) error {
	a := g.Annotation(n)
	if a == nil {
		return nil
	}
	b, _ := json.Marshal(a)
	if err := g.p.post(ctx, "", "application/json", b); err != nil {
		return fmt.Errorf("grafana: %w", err)
	}
	return nil
}
