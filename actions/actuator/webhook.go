package actuator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// WebhookOptions configure the webhook driver.
type WebhookOptions struct {
	// URL receives a POST of the command's CloudEvent JSON.
	URL string
	// Header is added to every request (e.g. Authorization).
	Header http.Header
	// Timeout bounds each attempt (default 10s).
	Timeout time.Duration
	// Retries is how many times a failed attempt is retried: after a
	// network error, a timeout, a 5xx or a 429 (default 3; negative: none).
	Retries int
	// Backoff is the wait before the first retry, doubled after each (default 500ms).
	Backoff time.Duration
	// Client sends the requests (default a plain http.Client).
	Client *http.Client
}

// Webhook is a driver that posts each command to a URL in CloudEvents
// structured mode. A 2xx answer is ok; any other answer, or no answer after
// the retries, failed.
type Webhook struct{ o WebhookOptions }

// NewWebhook checks the options and fills in defaults.
func NewWebhook(o WebhookOptions) (*Webhook, error) {
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil, fmt.Errorf("webhook driver: url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhook driver: url %q is not an http(s) URL with a host", u.Redacted())
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Retries == 0 {
		o.Retries = 3
	}
	if o.Retries < 0 {
		o.Retries = 0
	}
	if o.Backoff <= 0 {
		o.Backoff = 500 * time.Millisecond
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	o.Header = o.Header.Clone()
	return &Webhook{o: o}, nil
}

// Name is "webhook".
func (w *Webhook) Name() string { return "webhook" }

// Act posts c.Raw and reports the answer.
func (w *Webhook) Act(ctx context.Context, c Command) (string, error) {
	wait := w.o.Backoff
	for attempt := 1; ; attempt++ {
		detail, retry, err := w.post(ctx, c.Raw)
		if err == nil {
			return detail, nil
		}
		if !retry || attempt > w.o.Retries {
			if attempt > 1 {
				return "", fmt.Errorf("webhook: attempt %d of %d: %w", attempt, w.o.Retries+1, err)
			}
			return "", fmt.Errorf("webhook: %w", err)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("webhook: gave up after attempt %d: %w (last error: %v)", attempt, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// post makes one attempt; retry says whether another may succeed.
func (w *Webhook) post(ctx context.Context, body []byte) (detail string, retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, w.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.o.URL, bytes.NewReader(body))
	if err != nil {
		return "", false, err
	}
	for k, vs := range w.o.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Content-Type", "application/cloudevents+json")
	resp, err := w.o.Client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return "", true, fmt.Errorf("no answer from %s within %s", redact(w.o.URL), w.o.Timeout)
		}
		return "", true, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	answer := resp.Status + suffix(firstLine(string(b)))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return "webhook answered " + answer, false, nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return "", true, fmt.Errorf("%s answered %s", redact(w.o.URL), answer)
	}
	return "", false, fmt.Errorf("%s answered %s", redact(w.o.URL), answer)
}

// redact hides a password in u.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return p.Redacted()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(s)
}
