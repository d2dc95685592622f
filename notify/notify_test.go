package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/actions/wire"
	"github.com/rollguard/rollguard/internal/natstest"
	"github.com/rollguard/rollguard/internal/poll"
)

// env is a real NATS server with JetStream and rollguard's stream, and
// rollguard's signing key.
type env struct {
	js     jetstream.JetStream
	signer *wire.Signer
	subj   wire.Subjects
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ns := natstest.Start(t)
	js := natstest.JetStream(t, ns.ClientURL())
	s, err := wire.LoadSigner("", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{js: js, signer: s, subj: wire.Subjects{Prefix: DefaultPrefix}}
	if _, err := wire.EnsureStream(t.Context(), js, DefaultStream, e.subj); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) verifier(t *testing.T) *wire.Verifier {
	v, err := wire.NewVerifier(e.signer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// status publishes a status update as rollguard's playbook does, signed
// by signer (nil: unsigned), and returns its event id.
func (e *env) status(t *testing.T, signer *wire.Signer, inc string, seq int, state string) string {
	t.Helper()
	d := wire.StatusData{IncidentID: inc, Seq: seq, Service: "checkout", Guard: "checkout", State: state,
		Reason: "errors regressed", Internal: fmt.Sprintf("[%s] checkout v1 -> v2 (incident %s): errors regressed", state, inc),
		Customer: "We are aware of an issue affecting checkout.", NextUpdate: time.Now().Add(15 * time.Minute).UTC()}
	return e.publish(t, signer, e.subj.Status("checkout"), fmt.Sprintf("%s/status/%d", inc, seq), wire.TypeStatus, d)
}

// incident publishes an incident event.
func (e *env) incident(t *testing.T, inc string, seq int, kind, state string) string {
	t.Helper()
	d := wire.IncidentData{IncidentID: inc, Event: kind, Seq: seq, State: state, Service: "checkout", Guard: "checkout"}
	return e.publish(t, e.signer, e.subj.Incident("checkout"), fmt.Sprintf("%s/event/%d", inc, seq), wire.IncidentType(kind), d)
}

func (e *env) publish(t *testing.T, signer *wire.Signer, subject, id, typ string, data any) string {
	t.Helper()
	ev, err := wire.NewEvent(id, typ, "checkout", time.Now(), data)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(ev)
	if err := (wire.JetStreamPublisher{JS: e.js, Signer: signer}).Publish(t.Context(), wire.Message{Subject: subject, ID: id, Data: b}); err != nil {
		t.Fatal(err)
	}
	return id
}

// run runs a notifier until stop or the end of the test.
func (e *env) run(t *testing.T, o Options, d Driver) (stop func()) {
	t.Helper()
	o.JS = e.js
	if o.Verifier == nil {
		o.Verifier = e.verifier(t)
	}
	if o.Durable == "" {
		o.Durable = "notify-test"
	}
	o.Logger = hclog.New(&hclog.LoggerOptions{Name: "notify", Output: testWriter{t}, Level: hclog.Debug})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o, d) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return after its context was cancelled")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// endpoint is a local HTTP server that records what it is sent and
// answers with the next code of answers (then 2xx).
type endpoint struct {
	*httptest.Server
	mu      sync.Mutex
	bodies  []string
	reqs    []string // method, path and Authorization of each accepted request
	answers []int
	tries   int
}

func newEndpoint(t *testing.T, answers ...int) *endpoint {
	e := &endpoint{answers: answers}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		defer e.mu.Unlock()
		e.tries++
		if len(e.answers) > 0 {
			code := e.answers[0]
			e.answers = e.answers[1:]
			w.WriteHeader(code)
			return
		}
		e.bodies = append(e.bodies, string(b))
		e.reqs = append(e.reqs, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(e.Close)
	return e
}

// ids is the event ids of the CloudEvents accepted, in order.
func (e *endpoint) ids(t *testing.T) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, b := range e.bodies {
		var ev wire.Event
		if err := json.Unmarshal([]byte(b), &ev); err != nil {
			t.Fatalf("not a CloudEvent: %v: %s", err, b)
		}
		out = append(out, ev.ID)
	}
	return out
}

func (e *endpoint) count() int { e.mu.Lock(); defer e.mu.Unlock(); return len(e.bodies) }

func webhook(t *testing.T, url string) *Webhook {
	w, err := NewWebhook(HTTPOptions{URL: url, Backoff: 10 * time.Millisecond, Retries: 5})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func waitIDs(t *testing.T, ep *endpoint, want ...string) {
	t.Helper()
	poll.Until(t, 20*time.Second, func() error {
		if got := ep.ids(t); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("delivered %v, want %v", got, want)
		}
		return nil
	})
}

// TestWebhookCatchesUpInOrderOnce: events published while no notifier
// runs are delivered, in stream order, each once; a restarted notifier
// posts nothing again and delivers what came meanwhile.
func TestWebhookCatchesUpInOrderOnce(t *testing.T) {
	e := newEnv(t)
	ep := newEndpoint(t)
	a := e.incident(t, "inc-d1", 1, "opened", actions.StateWatching)
	b := e.status(t, e.signer, "inc-d1", 1, actions.StateContaining)
	stop := e.run(t, Options{}, webhook(t, ep.URL))
	waitIDs(t, ep, a, b)
	stop()
	c := e.status(t, e.signer, "inc-d1", 2, actions.StateStabilized)
	e.run(t, Options{}, webhook(t, ep.URL))
	waitIDs(t, ep, a, b, c)
	poll.Holds(t, time.Second, func() error {
		if n := ep.count(); n != 3 {
			return fmt.Errorf("%d posts, want 3", n)
		}
		return nil
	})
}

// TestRetriedInOrder: an endpoint that answers 503 and 429 gets the event
// once it accepts, and nothing later overtakes it.
func TestRetriedInOrder(t *testing.T) {
	e := newEnv(t)
	ep := newEndpoint(t, 503, 429, 503, 503, 503, 503, 503, 503) // more than one call's retries
	a := e.status(t, e.signer, "inc-d1", 1, actions.StateContaining)
	b := e.status(t, e.signer, "inc-d1", 2, actions.StateStabilized)
	e.run(t, Options{}, webhook(t, ep.URL))
	waitIDs(t, ep, a, b)
}

// TestUnverifiedAndRefusedSkipped: an unsigned message and one signed by
// another key are never posted; a 400 refusal skips its event (logged)
// without holding up the next.
func TestUnverifiedAndRefusedSkipped(t *testing.T) {
	e := newEnv(t)
	stranger, err := wire.LoadSigner("", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e.status(t, nil, "inc-forged", 1, actions.StateEscalated)
	e.status(t, stranger, "inc-forged", 2, actions.StateEscalated)
	ep := newEndpoint(t, 400)
	refused := e.status(t, e.signer, "inc-d1", 1, actions.StateContaining)
	b := e.status(t, e.signer, "inc-d1", 2, actions.StateStabilized)
	reg := prometheus.NewRegistry()
	e.run(t, Options{Registerer: reg}, webhook(t, ep.URL))
	waitIDs(t, ep, b)
	want := `
# HELP rollguard_notify_skipped_total Status updates and incident events not posted, by reason: unsigned, untrusted_key, bad_signature, malformed, refused (a 4xx), already_delivered.
# TYPE rollguard_notify_skipped_total counter
rollguard_notify_skipped_total{reason="refused"} 1
rollguard_notify_skipped_total{reason="unsigned"} 1
rollguard_notify_skipped_total{reason="untrusted_key"} 1
# HELP rollguard_notify_delivered_total Status updates and incident events done with: accepted by the endpoint, or nothing for this driver to post.
# TYPE rollguard_notify_delivered_total counter
rollguard_notify_delivered_total 1
`
	poll.Until(t, 10*time.Second, func() error {
		return testutil.GatherAndCompare(reg, strings.NewReader(want), "rollguard_notify_skipped_total", "rollguard_notify_delivered_total")
	})
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.tries != 2 {
		t.Errorf("%d requests, want 2: the refused %s once and %s", ep.tries, refused, b)
	}
}

// TestRecordedEventNotPostedAgain: an event whose delivery is recorded
// (the notifier posted it and stopped before its ack) is acked without a
// second post; another durable (another endpoint) still gets it.
func TestRecordedEventNotPostedAgain(t *testing.T) {
	e := newEnv(t)
	a := e.status(t, e.signer, "inc-d1", 1, actions.StateContaining)
	b := e.status(t, e.signer, "inc-d1", 2, actions.StateVerifying)
	kv, err := e.js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: DefaultBucket})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifier{o: Options{Durable: "slack"}}
	if _, err := kv.Put(t.Context(), n.recordKey(a), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	ep := newEndpoint(t)
	e.run(t, Options{Durable: "slack"}, webhook(t, ep.URL))
	waitIDs(t, ep, b)
	other := newEndpoint(t)
	e.run(t, Options{Durable: "pagerduty"}, webhook(t, other.URL))
	waitIDs(t, other, a, b)
}

// TestServicesFilterAndDeliverNew: --service limits the subjects; a new
// consumer with DeliverNew skips the history.
func TestServicesFilterAndDeliverNew(t *testing.T) {
	e := newEnv(t)
	old := e.status(t, e.signer, "inc-d1", 1, actions.StateContaining)
	ep := newEndpoint(t)
	e.run(t, Options{DeliverNew: true, Services: []string{"checkout"}}, webhook(t, ep.URL))
	poll.Until(t, 10*time.Second, func() error {
		info, err := e.js.Consumer(t.Context(), DefaultStream, "notify-test")
		if err != nil {
			return err
		}
		if got := info.CachedInfo().Config.FilterSubjects; fmt.Sprint(got) != "[rollguard.status.checkout rollguard.incident.checkout]" {
			return fmt.Errorf("filter %v", got)
		}
		return nil
	})
	other := e.publish(t, e.signer, e.subj.Status("payments"), "inc-p/status/1", wire.TypeStatus,
		wire.StatusData{IncidentID: "inc-p", Service: "payments", State: actions.StateContaining})
	next := e.status(t, e.signer, "inc-d1", 2, actions.StateStabilized)
	waitIDs(t, ep, next)
	for _, id := range ep.ids(t) {
		if id == old || id == other {
			t.Errorf("%s delivered", id)
		}
	}
}

// TestStartsBeforeTheStream: a notifier started before rollguard created
// its stream waits for it and delivers what comes.
func TestStartsBeforeTheStream(t *testing.T) {
	ns := natstest.Start(t)
	js := natstest.JetStream(t, ns.ClientURL())
	s, err := wire.LoadSigner("", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{js: js, signer: s, subj: wire.Subjects{Prefix: DefaultPrefix}}
	ep := newEndpoint(t)
	e.run(t, Options{}, webhook(t, ep.URL))
	if _, err := wire.EnsureStream(t.Context(), js, DefaultStream, e.subj); err != nil {
		t.Fatal(err)
	}
	a := e.status(t, e.signer, "inc-d1", 1, actions.StateContaining)
	waitIDs(t, ep, a)
}
