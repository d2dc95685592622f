package actuator

import (
	"context"
	"fmt"

	"github.com/rollguard/rollguard/internal/httppost"
)

// WebhookOptions configure the webhook driver: the URL receives a POST of
// the command's CloudEvent JSON, with the shared retry rule (network
// errors, timeouts, 5xx and 429 retried with a doubling wait).
type WebhookOptions = httppost.Options

// Webhook is a driver that posts each command to a URL in CloudEvents
// structured mode. A 2xx answer is ok; any other answer, or no answer after
// the retries, failed.
type Webhook struct{ p *httppost.Poster }

// NewWebhook checks the options and fills in defaults.
func NewWebhook(o WebhookOptions) (*Webhook, error) {
	p, err := httppost.New("webhook", o)
	if err != nil {
		return nil, err
	}
	return &Webhook{p: p}, nil
}

// Name is "webhook".
func (w *Webhook) Name() string { return "webhook" }

// Act posts c.Raw and reports the answer.
func (w *Webhook) Act(ctx context.Context, c Command) (string, error) {
	answer, err := w.p.Post(ctx, "", "application/cloudevents+json", c.Raw)
	if err != nil {
		return "", fmt.Errorf("webhook: %w", err)
	}
	return "webhook answered " + answer, nil
}
