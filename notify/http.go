package notify

import (
	"context"
	"errors"
	"fmt"

	"github.com/rollguard/rollguard/internal/httppost"
)

// HTTPOptions are what every HTTP driver shares: the URL, headers, the
// timeout of each attempt and the retry rule of the actuator's webhook
// driver (network errors, timeouts, 5xx and 429 retried with a doubling
// wait; another non-2xx answer is permanent).
type HTTPOptions = httppost.Options

// poster POSTs bodies by the shared rule.
type poster struct{ p *httppost.Poster }

func newPoster(driver string, o HTTPOptions) (poster, error) {
	p, err := httppost.New(driver, o)
	return poster{p}, err
}

// post sends body to u (the configured URL when empty) and retries per the
// rule; a permanent refusal wraps ErrPermanent.
func (p poster) post(ctx context.Context, u, contentType string, body []byte) error {
	_, err := p.p.Post(ctx, u, contentType, body)
	if errors.Is(err, httppost.ErrRefused) {
		return fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	return err
}

// redact hides a password in u.
func redact(u string) string { return httppost.Redact(u) }
