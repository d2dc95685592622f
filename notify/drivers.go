package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/actions/wire"
)

// Webhook posts every status update and incident event, the CloudEvent
// JSON exactly as rollguard signed it, in CloudEvents structured mode. A
// receiver deduplicates by the event's id.
type Webhook struct{ p poster }

// NewWebhook checks the options and fills in defaults.
func NewWebhook(o HTTPOptions) (*Webhook, error) {
	p, err := newPoster("webhook", o)
	if err != nil {
		return nil, err
	}
	return &Webhook{p: p}, nil
}

// Name is "webhook".
func (w *Webhook) Name() string { return "webhook" }

// Notify posts n.Raw.
func (w *Webhook) Notify(ctx context.Context, n Notification) error {
	if err := w.p.post(ctx, "", "application/cloudevents+json", n.Raw); err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	return nil
}

// IncidentURL is the incident's page in rollguard's web UI, or "" without a
// base URL.
func IncidentURL(base, id string) string {
	if base == "" {
		return ""
	}
	return strings.TrimRight(base, "/") + "/incidents/" + id
}

// Slack posts each status update to a Slack incoming webhook: the internal
// text rollguard rendered from its template, with a link to the incident's
// page. Incident events are not posted: every state change they announce
// comes with its status update.
//
// Request shape: https://api.slack.com/messaging/webhooks — a POST of
// application/json {"text": "..."}; links are written <url|text> and &, <
// and > in the text are escaped as &amp; &lt; &gt;
// (https://api.slack.com/reference/surfaces/formatting#escaping).
type Slack struct {
	p      poster
	webURL string
}

// NewSlack posts to an incoming-webhook URL; webURL is rollguard's web UI
// base (its incident pages are linked), or "".
func NewSlack(o HTTPOptions, webURL string) (*Slack, error) {
	p, err := newPoster("slack", o)
	if err != nil {
		return nil, err
	}
	return &Slack{p: p, webURL: webURL}, nil
}

// Name is "slack".
func (s *Slack) Name() string { return "slack" }

// SlackMessage is the body of an incoming-webhook POST.
type SlackMessage struct {
	Text string `json:"text"`
}

// Message is what Notify posts for a status update.
func (s *Slack) Message(st *wire.StatusData) SlackMessage {
	text := slackEscape(st.Internal)
	if u := IncidentURL(s.webURL, st.IncidentID); u != "" {
		text += "\n<" + u + "|Incident " + slackEscape(st.IncidentID) + ">"
	}
	return SlackMessage{Text: text}
}

// Notify posts status updates and skips incident events.
func (s *Slack) Notify(ctx context.Context, n Notification) error {
	if n.Status == nil {
		return nil
	}
	b, _ := json.Marshal(s.Message(n.Status))
	if err := s.p.post(ctx, "", "application/json", b); err != nil {
		return fmt.Errorf("slack: %w", err)
	}
	return nil
}

func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// Open reports whether an incident in state still needs people's attention:
// every state but stabilized (recovered and holding) and closed.
func Open(state string) bool {
	return state != actions.StateStabilized && state != actions.StateClosed
}

// Severity is the severity a page or an alert carries: critical once
// rollguard has handed over to people (escalated), error otherwise.
func Severity(state string) string {
	if state == actions.StateEscalated {
		return "critical"
	}
	return "error"
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
