package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/rollguard/rollguard/actions/wire"
)

// AlertName is the alertname of rollguard's alerts.
const AlertName = "RollguardIncident"

// DefaultResendInterval is how often open incidents' alerts are sent again.
const DefaultResendInterval = time.Minute

// AlertmanagerOptions configure the Alertmanager driver.
type AlertmanagerOptions struct {
	// URLs are the Alertmanagers' base URLs (http://alertmanager:9093); an
	// alert goes to each, as Prometheus sends to every member of an HA pair.
	URLs []string
	HTTP HTTPOptions
	// WebURL is rollguard's web UI base: the alerts' generatorURL is the
	// incident's page. Optional.
	WebURL string
	// ResendInterval is how often the alerts of the open incidents this
	// notifier has seen are sent again (default 1m), so that an
	// Alertmanager that restarted (it keeps no alerts) has them back.
	ResendInterval time.Duration
	Logger         hclog.Logger
	Now            func() time.Time
}

// Alertmanager keeps one Alertmanager alert per open incident, from the
// status updates (POST /api/v2/alerts, the API Prometheus uses:
// https://github.com/prometheus/alertmanager/blob/main/api/v2/openapi.yaml).
// Its labels are alertname=RollguardIncident, incident, service, guard and
// severity (error, critical once escalated); its annotations the status
// texts. The labels are the alert's identity, so sending it again — a
// re-send, a redelivery — only refreshes it. An open incident's alert ends
// (endsAt) no earlier than rollguard's next status update plus one resend
// interval, so it stays active across a notifier restart as long as
// rollguard keeps sending updates; a stabilized or closed one is sent with
// endsAt now: resolved. Since severity is part of the identity, every send
// also resolves the incident's alert at the other severity.
type Alertmanager struct {
	o       AlertmanagerOptions
	posters []poster

	// mu is held across each send too, so that a re-send never lands
	// after the resolve that ended its incident.
	mu   sync.Mutex
	open map[string]amAlert // by incident id
}

// NewAlertmanager checks the options.
func NewAlertmanager(o AlertmanagerOptions) (*Alertmanager, error) {
	if len(o.URLs) == 0 {
		return nil, errors.New("alertmanager driver: no Alertmanager URL")
	}
	if o.ResendInterval <= 0 {
		o.ResendInterval = DefaultResendInterval
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	a := &Alertmanager{o: o, open: map[string]amAlert{}}
	for _, u := range o.URLs {
		h := o.HTTP
		h.URL = strings.TrimRight(u, "/") + "/api/v2/alerts"
		p, err := newPoster("alertmanager", h)
		if err != nil {
			return nil, err
		}
		a.posters = append(a.posters, p)
	}
	return a, nil
}

// Name is "alertmanager".
func (a *Alertmanager) Name() string { return "alertmanager" }

// PostableAlert is an alert as POST /api/v2/alerts takes it.
type PostableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitzero"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// amAlert is what is kept of an open incident to send it again.
type amAlert struct {
	status   wire.StatusData
	startsAt time.Time
}

// Alerts are the alerts sent for a status update at now: the incident's
// alert at its severity (active while the incident is open, resolved
// otherwise) and the one at the other severity, resolved.
func (a *Alertmanager) Alerts(s wire.StatusData, startsAt, now time.Time) []PostableAlert {
	labels := func(severity string) map[string]string {
		return map[string]string{"alertname": AlertName, "incident": s.IncidentID, "service": s.Service,
			"guard": s.Guard, "severity": severity}
	}
	ann := map[string]string{"summary": s.Internal, "description": s.Reason, "customer": s.Customer, "state": s.State}
	if u := IncidentURL(a.o.WebURL, s.IncidentID); u != "" {
		ann["incident_url"] = u
	}
	for k, v := range ann {
		if v == "" {
			delete(ann, k)
		}
	}
	severity, other := Severity(s.State), "critical"
	if severity == "critical" {
		other = "error"
	}
	ends := now
	if Open(s.State) {
		ends = now.Add(3 * a.o.ResendInterval)
		if next := s.NextUpdate.Add(a.o.ResendInterval); next.After(ends) {
			ends = next
		}
	}
	gen := IncidentURL(a.o.WebURL, s.IncidentID)
	return []PostableAlert{
		{Labels: labels(severity), Annotations: ann, StartsAt: startsAt.UTC(), EndsAt: ends.UTC(), GeneratorURL: gen},
		{Labels: labels(other), Annotations: ann, StartsAt: startsAt.UTC(), EndsAt: now.UTC(), GeneratorURL: gen},
	}
}

// Notify sends the alerts of a status update; incident events add nothing.
func (a *Alertmanager) Notify(ctx context.Context, n Notification) error {
	if n.Status == nil {
		return nil
	}
	s := *n.Status
	a.mu.Lock()
	defer a.mu.Unlock()
	starts := n.Event.Time
	if prev, ok := a.open[s.IncidentID]; ok && prev.startsAt.Before(starts) {
		starts = prev.startsAt
	}
	if err := a.send(ctx, a.Alerts(s, starts, a.o.Now())); err != nil {
		return err
	}
	if Open(s.State) {
		a.open[s.IncidentID] = amAlert{status: s, startsAt: starts}
	} else {
		delete(a.open, s.IncidentID)
	}
	return nil
}

// Run sends the open incidents' alerts again every ResendInterval until
// ctx ends. It starts from the alerts an Alertmanager holds active, so that
// a notifier that restarted keeps sending the alerts of the incidents it
// posted before.
func (a *Alertmanager) Run(ctx context.Context) {
	a.seed(ctx)
	t := time.NewTicker(a.o.ResendInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.resend(ctx)
	}
}

// resend sends the open incidents' alerts again.
func (a *Alertmanager) resend(ctx context.Context) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ids := make([]string, 0, len(a.open))
	for id := range a.open {
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return
	}
	sort.Strings(ids)
	now := a.o.Now()
	var alerts []PostableAlert
	for _, id := range ids {
		al := a.open[id]
		alerts = append(alerts, a.Alerts(al.status, al.startsAt, now)[0])
	}
	sctx, cancel := context.WithTimeout(ctx, a.o.ResendInterval)
	defer cancel()
	if err := a.send(sctx, alerts); err != nil && ctx.Err() == nil {
		a.o.Logger.Warn("alerts not sent again; next try in one resend interval", "error", err, "alerts", len(alerts))
	}
}

// seed adds the incidents whose alerts the first Alertmanager that
// answers holds active to those sent again, rebuilt from the alerts'
// labels and annotations; their next update is taken to be one resend
// interval before the alert ends, so re-sending keeps its endsAt.
// The lock is held from the read on: a status update handled meanwhile
// (a resolve) is applied after it, never overwritten by it.
func (a *Alertmanager) seed(ctx context.Context) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, u := range a.o.URLs {
		alerts, err := a.active(ctx, u)
		if err != nil {
			a.o.Logger.Warn("open incidents' alerts not read back; they are sent again from their next status update", "url", redact(u), "error", err)
			continue
		}
		n := 0
		for _, al := range alerts {
			l, an := al.Labels, al.Annotations
			id := l["incident"]
			if id == "" || !Open(an["state"]) || al.EndsAt.Before(a.o.Now()) {
				continue
			}
			if _, ok := a.open[id]; ok {
				continue
			}
			a.open[id] = amAlert{startsAt: al.StartsAt, status: wire.StatusData{IncidentID: id, Service: l["service"], Guard: l["guard"],
				State: an["state"], Reason: an["description"], Internal: an["summary"], Customer: an["customer"],
				NextUpdate: al.EndsAt.Add(-a.o.ResendInterval)}}
			n++
		}
		a.o.Logger.Info("sending open incidents' alerts again", "read_back", n, "url", redact(u))
		return
	}
}

// active reads the Alertmanager's active rollguard alerts.
func (a *Alertmanager) active(ctx context.Context, base string) ([]PostableAlert, error) {
	ctx, cancel := context.WithTimeout(ctx, a.posters[0].p.Options().Timeout)
	defer cancel()
	q := url.Values{"filter": {`alertname="` + AlertName + `"`}, "active": {"true"}, "silenced": {"true"}, "inhibited": {"true"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/api/v2/alerts?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	for k, vs := range a.o.HTTP.Header {
		req.Header[k] = vs
	}
	client := a.o.HTTP.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v2/alerts: %s", resp.Status)
	}
	var out []PostableAlert
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("decode alerts: %w", err)
	}
	return out, nil
}

// send posts alerts to every Alertmanager; it fails if one did not take them.
func (a *Alertmanager) send(ctx context.Context, alerts []PostableAlert) error {
	b, err := json.Marshal(alerts)
	if err != nil {
		return fmt.Errorf("alertmanager: encode alerts: %w", err)
	}
	var errs []error
	for _, p := range a.posters {
		if err := p.post(ctx, "", "application/json", b); err != nil {
			errs = append(errs, fmt.Errorf("alertmanager: %w", err))
		}
	}
	return errors.Join(errs...)
}
