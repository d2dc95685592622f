// Package httppost POSTs a body to an HTTP endpoint with the retry rule
// rollguard's outbound drivers share (the actuator's webhook, the
// notifiers): a network error, a timeout, a 5xx or a 429 is retried after a
// doubling wait; any other non-2xx answer is a refusal no retry can change.
package httppost

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

// Options configure a Poster.
type Options struct {
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

// ErrRefused marks an answer no retry can change (a non-2xx other than
// 5xx and 429).
var ErrRefused = errors.New("refused")

// Poster POSTs bodies by the retry rule.
type Poster struct{ o Options }

// New checks the options (driver names the caller in errors) and fills in
// the defaults.
func New(driver string, o Options) (*Poster, error) {
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil, fmt.Errorf("%s driver: url: %w", driver, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s driver: url %q is not an http(s) URL with a host", driver, u.Redacted())
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
	return &Poster{o: o}, nil
}

// Options returns the options in use, defaults filled in.
func (p *Poster) Options() Options { return p.o }

// Post sends body to u (the configured URL when empty), retrying by the
// rule, and returns the endpoint's answer ("202 Accepted: <first line>").
// An error wraps ErrRefused when the endpoint refused for good; one after
// several attempts says how many.
func (p *Poster) Post(ctx context.Context, u, contentType string, body []byte) (string, error) {
	if u == "" {
		u = p.o.URL
	}
	wait := p.o.Backoff
	for attempt := 1; ; attempt++ {
		answer, retry, err := p.once(ctx, u, contentType, body)
		if err == nil {
			return answer, nil
		}
		if !retry || attempt > p.o.Retries {
			if attempt > 1 {
				return "", fmt.Errorf("attempt %d of %d: %w", attempt, p.o.Retries+1, err)
			}
			return "", err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("gave up after attempt %d: %w (last error: %v)", attempt, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// once makes one attempt; retry says whether another may succeed.
func (p *Poster) once(ctx context.Context, u, contentType string, body []byte) (answer string, retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, p.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return "", false, err
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
			return "", true, fmt.Errorf("no answer from %s within %s", Redact(u), p.o.Timeout)
		}
		return "", true, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	answer = resp.Status
	if line := firstLine(string(b)); line != "" {
		answer += ": " + line
	}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return answer, false, nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return "", true, fmt.Errorf("%s answered %s", Redact(u), answer)
	}
	return "", false, fmt.Errorf("%w: %s answered %s", ErrRefused, Redact(u), answer)
}

// Redact hides a password in u.
func Redact(u string) string {
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
