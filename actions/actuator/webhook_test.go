package actuator

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollguard/rollguard/actions/wire"
)

// hook is a webhook receiver that answers each request with the next status
// of its script (the last one repeats), or hangs for status 0.
type hook struct {
	mu       sync.Mutex
	statuses []int
	requests []*http.Request
	bodies   [][]byte
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	status := h.statuses[min(len(h.requests), len(h.statuses)-1)]
	h.requests = append(h.requests, r)
	h.bodies = append(h.bodies, body)
	h.mu.Unlock()
	if status == 0 {
		<-r.Context().Done()
		return
	}
	w.WriteHeader(status)
	io.WriteString(w, http.StatusText(status)+" from the flag service\nsecond line")
}

func (h *hook) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.requests)
}

func newHook(t *testing.T, statuses ...int) (*hook, string) {
	h := &hook{statuses: statuses}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv.URL + "/kill"
}

// TestWebhook: the CloudEvent is posted with its content type and the
// configured headers; 5xx and 429 are retried, 2xx is ok, other 4xx fail at
// once, and an endpoint that does not answer fails after the retries.
func TestWebhook(t *testing.T) {
	raw := command(t, "d-1/flag_kill/new-checkout", wire.ActionFlagKill, "checkout", "new-checkout", nil)
	for _, tc := range []struct {
		name     string
		statuses []int
		attempts int
		detail   string // on success
		err      string // on failure
	}{
		{"ok", []int{200}, 1, "webhook answered 200 OK: OK from the flag service", ""},
		{"503 then ok", []int{503, 503, 202}, 3, "webhook answered 202 Accepted", ""},
		{"429 then ok", []int{429, 204}, 2, "webhook answered 204 No Content", ""},
		{"400 fails at once", []int{400, 200}, 1, "", "answered 400 Bad Request: Bad Request from the flag service"},
		{"503 every time", []int{503}, 3, "", "webhook: attempt 3 of 3: "},
		{"timeout", []int{0}, 3, "", "within 200ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, url := newHook(t, tc.statuses...)
			w, err := NewWebhook(WebhookOptions{URL: url, Header: http.Header{"Authorization": {"Bearer s3cret"}},
				Timeout: 200 * time.Millisecond, Retries: 2, Backoff: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			detail, err := w.Act(t.Context(), decoded(t, raw))
			switch {
			case tc.err == "" && (err != nil || !strings.HasPrefix(detail, tc.detail)):
				t.Errorf("detail %q, error %v, want %q", detail, err, tc.detail)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("error %v, want it to contain %q", err, tc.err)
			}
			if n := h.count(); n != tc.attempts {
				t.Errorf("%d requests, want %d", n, tc.attempts)
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			for i, r := range h.requests {
				if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/cloudevents+json" ||
					r.Header.Get("Authorization") != "Bearer s3cret" || string(h.bodies[i]) != string(raw) {
					t.Errorf("request %d: %s %v %q", i, r.Method, r.Header, h.bodies[i])
				}
			}
		})
	}
}

// TestWebhookOptions: a URL that is not http(s) is refused at start.
func TestWebhookOptions(t *testing.T) {
	for _, u := range []string{"", "ftp://example.com/x", "http://", "://x"} {
		if _, err := NewWebhook(WebhookOptions{URL: u}); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
	if _, err := NewWebhook(WebhookOptions{URL: "https://flags.example.com/kill"}); err != nil {
		t.Error(err)
	}
}
