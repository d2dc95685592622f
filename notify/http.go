package notify

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

// HTTPOptions are what every HTTP driver shares.
type HTTPOptions struct {
	// URL receives the POSTs.
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

// poster POSTs bodies with the retry rule of the actuator's webhook driver:
// network errors, timeouts, 5xx and 429 are retried with a doubling wait;
// another non-2xx answer is permanent.
type poster struct{ o HTTPOptions }

func newPoster(driver string, o HTTPOptions) (poster, error) {
	u, err := url.Parse(o.URL)
	if err != nil {
		return poster{}, fmt.Errorf("%s driver: url: %w", driver, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return poster{}, fmt.Errorf("%s driver: url %q is not an http(s) URL with a host", driver, u.Redacted())
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
	return poster{o: o}, nil
}

// post sends body to u (the configured URL when empty) and retries per the
// rule; a permanent refusal wraps ErrPermanent.
func (p poster) post(ctx context.Context, u, contentType string, body []byte) error {
	if u == "" {
		u = p.o.URL
	}
	wait := p.o.Backoff
	for attempt := 1; ; attempt++ {
		retry, err := p.once(ctx, u, contentType, body)
		if err == nil {
			return nil
		}
		if !retry {
			return fmt.Errorf("%w: %w", ErrPermanent, err)
		}
		if attempt > p.o.Retries {
			return fmt.Errorf("attempt %d of %d: %w", attempt, p.o.Retries+1, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up after attempt %d: %w (last error: %v)", attempt, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (p poster) once(ctx context.Context, u, contentType string, body []byte) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, p.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	for k, vs := range p.o.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := p.o.Client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return true, fmt.Errorf("no answer from %s within %s", redact(u), p.o.Timeout)
		}
		return true, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	answer := resp.Status
	if line := firstLine(string(b)); line != "" {
		answer += ": " + line
	}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return true, fmt.Errorf("%s answered %s", redact(u), answer)
	}
	return false, fmt.Errorf("%s answered %s", redact(u), answer)
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
