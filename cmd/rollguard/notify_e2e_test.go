package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/actions/wire"
	"github.com/rollguard/rollguard/internal/poll"
	"github.com/rollguard/rollguard/notify"
	"github.com/rollguard/rollguard/notify/amtest"
)

// inbox is a local HTTP server standing in for a SaaS endpoint (Slack's
// incoming webhook, PagerDuty's Events API, a webhook receiver): it keeps
// every request body and answers as the service documents (202).
type inbox struct {
	*httptest.Server
	mu     sync.Mutex
	paths  []string
	bodies []string
}

func newInbox(t *testing.T) *inbox {
	in := &inbox{}
	in.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		in.mu.Lock()
		in.paths = append(in.paths, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type"))
		in.bodies = append(in.bodies, string(b))
		in.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(in.Close)
	return in
}

func (in *inbox) got() (paths, bodies []string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]string(nil), in.paths...), append([]string(nil), in.bodies...)
}

func (in *inbox) count() int { _, b := in.got(); return len(b) }

// startNotify runs `rollguard notify` in-process, as the CLI does, with
// the daemon's NATS and signing key, until stop or the end of the test.
func startNotify(t *testing.T, td *testDaemon, durable string, args ...string) (stop func()) {
	t.Helper()
	checkFor(t, 10*time.Second, func() error { _, err := os.Stat(pubKey(td)); return err })
	app := kingpin.New("rollguard", "")
	app.Terminate(nil)
	_, o := notifyFlags(app)
	argv := append([]string{"notify", "--nats.url=" + natsURL(td), "--durable=" + durable,
		"--verify.key-file=" + pubKey(td), "--web.url=http://rollguard.example:9469"}, args...)
	if _, err := app.Parse(argv); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() { code <- runNotify(ctx, *o, &actuateLog{t: t}) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if c := <-code; c != 0 {
				t.Errorf("rollguard notify %s exited %d", durable, c)
			}
		})
	}
	t.Cleanup(stop)
	// Consuming once the durable consumer exists.
	checkFor(t, 10*time.Second, func() error {
		_, err := td.js.Consumer(t.Context(), "ROLLGUARD", durable)
		return err
	})
	return stop
}

// published is the status updates and incident events in the stream, in order.
func published(t *testing.T, td *testDaemon) (events []wire.Event, statuses []wire.StatusData) {
	t.Helper()
	for _, m := range streamMsgs(t, td.stream, "rollguard.") {
		if !strings.HasPrefix(m.Subject, "rollguard.status.") && !strings.HasPrefix(m.Subject, "rollguard.incident.") {
			continue
		}
		var ev wire.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
		if strings.HasPrefix(m.Subject, "rollguard.status.") {
			var s wire.StatusData
			if err := json.Unmarshal(ev.Data, &s); err != nil {
				t.Fatal(err)
			}
			statuses = append(statuses, s)
		}
	}
	return events, statuses
}

// TestNotifyEndToEnd: a bad canary (OpenTelemetry SDK fleet) opens an
// incident that no actuator answers, so it escalates; a person acks and
// closes it. Each driver's endpoint gets the documented requests, from
// the texts rollguard published:
//   - Slack (https://api.slack.com/messaging/webhooks): one {"text"} per
//     status update, its internal text and the incident page link — those
//     sent while its notifier was down once it is back;
//   - PagerDuty Events v2 (https://developer.pagerduty.com/docs/events-api-v2/overview/):
//     trigger per open status update, acknowledge on the ack, resolve at
//     close, all with dedup_key = the incident id;
//   - a real Alertmanager: the incident's alert is active at severity
//     critical once escalated, and resolved at close;
//   - Grafana (https://grafana.com/docs/grafana/latest/developers/http_api/annotations/):
//     one annotation per incident event, at its time, tagged;
//   - webhook, started only after the incident closed with --deliver=all:
//     every event in stream order, each CloudEvent posted once and as
//     signed; started again, it posts nothing twice.
func TestNotifyEndToEnd(t *testing.T) {
	var am *amtest.Alertmanager
	if amtest.Path() != "" {
		am = amtest.Start(t)
	} else {
		t.Log(amtest.Missing)
	}
	td := startDaemon(t, pbConfig(embeddedNATS, "127.0.0.1:0", ""))
	slack, pd, hook, grafana := newInbox(t), newInbox(t), newInbox(t), newInbox(t)
	startNotify(t, td, "notify-grafana", "--driver=grafana", "--grafana.url="+grafana.URL, "--grafana.token=glsa_test")
	slackArgs := []string{"--driver=slack", "--slack.url=" + slack.URL + "/services/T0/B0/XXXX"}
	stopSlack := startNotify(t, td, "notify-slack", slackArgs...)
	stopPD := startNotify(t, td, "notify-pagerduty", "--driver=pagerduty", "--pagerduty.routing-key=R0UT1NGKEY",
		"--pagerduty.url="+pd.URL+"/v2/enqueue")
	if am != nil {
		startNotify(t, td, "notify-alertmanager", "--driver=alertmanager", "--alertmanager.url="+am.URL,
			"--alertmanager.resend-interval=500ms")
	}

	f := newFleet(t, td.otlp)
	f.badAlways = true
	inc := untilState(t, f, td.get, actions.StateEscalated, 120*time.Second)
	if am != nil {
		checkFor(t, 20*time.Second, func() error {
			alerts, err := am.Alerts(fmt.Sprintf("incident=%q", inc.ID))
			if err != nil {
				return err
			}
			if len(alerts) != 1 || alerts[0].Labels["severity"] != "critical" || alerts[0].Labels["alertname"] != notify.AlertName ||
				alerts[0].Labels["service"] != "checkout" || !strings.HasPrefix(alerts[0].Annotations["summary"], "[escalated] checkout v1 -> v2") {
				return fmt.Errorf("active alerts %+v, want the escalated incident's, critical", alerts)
			}
			return nil
		})
	}
	// Slack's notifier is down while a person acks and closes the incident.
	checkFor(t, 20*time.Second, func() error {
		if _, s := published(t, td); slack.count() != len(s) {
			return fmt.Errorf("slack got %d posts, want %d so far", slack.count(), len(s))
		}
		return nil
	})
	stopSlack()
	down := slack.count()
	if code, b := td.post("/api/v1/incidents/"+inc.ID+"/ack", `{"by":"alice","reason":"looking"}`); code != 200 {
		t.Fatalf("ack: %d %s", code, b)
	}
	if code, b := td.post("/api/v1/incidents/"+inc.ID+"/close", `{"by":"alice","reason":"rolled back by hand"}`); code != 200 {
		t.Fatalf("close: %d %s", code, b)
	}
	var statuses []wire.StatusData
	checkFor(t, 10*time.Second, func() error {
		if _, statuses = published(t, td); len(statuses) == 0 || statuses[len(statuses)-1].State != actions.StateClosed {
			return fmt.Errorf("no closed status update yet")
		}
		return nil
	})
	events, _ := published(t, td)

	// Slack: back, it catches up; one post per status update, in order, as Slack documents.
	startNotify(t, td, "notify-slack", slackArgs...)
	checkFor(t, 20*time.Second, func() error {
		if n := slack.count(); n != len(statuses) {
			return fmt.Errorf("slack got %d posts, want %d (one per status update)", n, len(statuses))
		}
		return nil
	})
	paths, bodies := slack.got()
	for i, b := range bodies {
		var m struct{ Text string }
		if err := json.Unmarshal([]byte(b), &m); err != nil || paths[i] != "POST /services/T0/B0/XXXX application/json" {
			t.Fatalf("slack request %s %s: %v", paths[i], b, err)
		}
		want := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(statuses[i].Internal) + "\n<http://rollguard.example:9469/incidents/" + inc.ID + "|Incident " + inc.ID + ">"
		if m.Text != want {
			t.Errorf("slack post %d:\n%s\nwant\n%s", i, m.Text, want)
		}
	}

	// PagerDuty: trigger while open, acknowledge, resolve last.
	checkFor(t, 20*time.Second, func() error {
		_, bodies := pd.got()
		if len(bodies) == 0 || !strings.Contains(bodies[len(bodies)-1], `"event_action":"resolve"`) {
			return fmt.Errorf("pagerduty got %d events, the last not a resolve", len(bodies))
		}
		return nil
	})
	paths, bodies = pd.got()
	var actionsSeen []string
	triggers := 0
	for i, b := range bodies {
		var ev notify.PagerDutyEvent
		if err := json.Unmarshal([]byte(b), &ev); err != nil || paths[i] != "POST /v2/enqueue application/json" {
			t.Fatalf("pagerduty request %s %s: %v", paths[i], b, err)
		}
		if ev.RoutingKey != "R0UT1NGKEY" || ev.DedupKey != inc.ID {
			t.Errorf("pagerduty event %s: routing_key %q dedup_key %q", ev.EventAction, ev.RoutingKey, ev.DedupKey)
		}
		if ev.EventAction == "trigger" {
			p := ev.Payload
			if p == nil || p.Summary != statuses[triggers].Internal || p.Source != "rollguard/checkout" || p.Component != "checkout" ||
				(p.Severity != "critical") != (statuses[triggers].State != actions.StateEscalated) {
				t.Errorf("trigger %d payload %+v for status %+v", triggers, p, statuses[triggers])
			}
			triggers++
		}
		if len(actionsSeen) == 0 || actionsSeen[len(actionsSeen)-1] != ev.EventAction {
			actionsSeen = append(actionsSeen, ev.EventAction)
		}
	}
	// The ack's status update (state unchanged) triggers again: PagerDuty
	// adds it to the acknowledged alert's log.
	if got := strings.Join(actionsSeen, ","); got != "trigger,acknowledge,trigger,resolve" {
		t.Errorf("pagerduty actions %s, want trigger…, acknowledge, trigger (the ack's status update), resolve", got)
	}
	if triggers != len(statuses)-1 {
		t.Errorf("%d triggers for %d status updates of an open incident", triggers, len(statuses)-1)
	}
	t.Logf("%d status updates, %d incident events; pagerduty got %d events (%s), slack %d posts (%d after its restart)",
		len(statuses), len(events)-len(statuses), len(bodies), strings.Join(actionsSeen, ","), slack.count(), slack.count()-down)
	// Restarted, the PagerDuty notifier posts nothing again.
	n := pd.count()
	stopPD()
	startNotify(t, td, "notify-pagerduty", "--driver=pagerduty", "--pagerduty.routing-key=R0UT1NGKEY",
		"--pagerduty.url="+pd.URL+"/v2/enqueue")
	poll.Holds(t, 2*time.Second, func() error {
		if got := pd.count(); got != n {
			return fmt.Errorf("the restarted notifier posted %d more", got-n)
		}
		return nil
	})

	if am != nil {
		checkFor(t, 20*time.Second, func() error {
			if alerts, err := am.Alerts(fmt.Sprintf("incident=%q", inc.ID)); err != nil || len(alerts) != 0 {
				return fmt.Errorf("alerts %+v (%v) after the close", alerts, err)
			}
			return nil
		})
	}

	// Grafana: one annotation per incident event, in order, tagged.
	checkFor(t, 20*time.Second, func() error {
		if n := grafana.count(); n != len(events)-len(statuses) {
			return fmt.Errorf("grafana got %d annotations, want %d (one per incident event)", n, len(events)-len(statuses))
		}
		return nil
	})
	paths, bodies = grafana.got()
	i := 0
	for _, ev := range events {
		if !strings.Contains(ev.ID, "/event/") {
			continue
		}
		var a notify.GrafanaAnnotation
		if err := json.Unmarshal([]byte(bodies[i]), &a); err != nil || paths[i] != "POST /api/annotations application/json" {
			t.Fatalf("grafana request %s %s: %v", paths[i], bodies[i], err)
		}
		var data wire.IncidentData
		_ = json.Unmarshal(ev.Data, &data)
		if a.Time != ev.Time.UnixMilli() || strings.Join(a.Tags, ",") != "rollguard,service:checkout,incident:"+inc.ID+",state:"+data.State ||
			!strings.Contains(a.Text, data.Reason) {
			t.Errorf("annotation %d %+v for event %s %+v", i, a, ev.ID, data)
		}
		i++
	}

	// Webhook, started after it all with --deliver=all: the stream's
	// history, in order, once each.
	hookArgs := []string{"--driver=webhook", "--webhook.url=" + hook.URL + "/rollguard", "--deliver=all"}
	stop := startNotify(t, td, "notify-webhook", hookArgs...)
	checkFor(t, 20*time.Second, func() error {
		if n := hook.count(); n != len(events) {
			return fmt.Errorf("webhook got %d events, want all %d", n, len(events))
		}
		return nil
	})
	paths, bodies = hook.got()
	for i, b := range bodies {
		var ev wire.Event
		if err := json.Unmarshal([]byte(b), &ev); err != nil || ev.ID != events[i].ID || paths[i] != "POST /rollguard application/cloudevents+json" {
			t.Errorf("webhook request %d: %s %.120s, want event %s", i, paths[i], b, events[i].ID)
		}
	}
	stop()
	startNotify(t, td, "notify-webhook", hookArgs...)
	poll.Holds(t, 2*time.Second, func() error {
		if got := hook.count(); got != len(events) {
			return fmt.Errorf("the restarted webhook notifier posted %d more", got-len(events))
		}
		return nil
	})
}

// TestNotifyHealthyCanaryTwin: the same notifiers with a healthy canary
// send nothing at all.
func TestNotifyHealthyCanaryTwin(t *testing.T) {
	var am *amtest.Alertmanager
	if amtest.Path() != "" {
		am = amtest.Start(t)
	} else {
		t.Log(amtest.Missing)
	}
	td := startDaemon(t, pbConfig(embeddedNATS, "127.0.0.1:0", ""))
	slack, pd, hook, grafana := newInbox(t), newInbox(t), newInbox(t), newInbox(t)
	startNotify(t, td, "notify-slack", "--driver=slack", "--slack.url="+slack.URL)
	startNotify(t, td, "notify-grafana", "--driver=grafana", "--grafana.url="+grafana.URL)
	startNotify(t, td, "notify-pagerduty", "--driver=pagerduty", "--pagerduty.routing-key=R0UT1NGKEY", "--pagerduty.url="+pd.URL)
	startNotify(t, td, "notify-webhook", "--driver=webhook", "--webhook.url="+hook.URL)
	if am != nil {
		startNotify(t, td, "notify-alertmanager", "--driver=alertmanager", "--alertmanager.url="+am.URL, "--alertmanager.resend-interval=200ms")
	}
	f := newFleet(t, td.otlp)
	for i := 0; i < 60; i++ {
		f.round()
	}
	td.nextEvaluation(t, "checkout")
	if inc := incidentOf(t, td.get); inc != nil {
		t.Fatalf("healthy canary: incident %+v", inc)
	}
	poll.Holds(t, time.Second, func() error {
		if s, p, h, g := slack.count(), pd.count(), hook.count(), grafana.count(); s+p+h+g != 0 {
			return fmt.Errorf("healthy canary notified: slack %d, pagerduty %d, webhook %d, grafana %d", s, p, h, g)
		}
		if am != nil {
			if alerts, err := am.Alerts(); err != nil || len(alerts) != 0 {
				return fmt.Errorf("alertmanager alerts %+v (%v)", alerts, err)
			}
		}
		return nil
	})
}

// TestNotifyFlags: bad flags exit 2 with a message that says what to
// pass, before anything connects (the NATS URL points nowhere).
func TestNotifyFlags(t *testing.T) {
	key := t.TempDir() + "/signing.pub"
	s, err := actions.LoadSigner("", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, []byte(s.PublicKey()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"notify", "--nats.url=nats://127.0.0.1:1", "--durable=n", "--verify.key-file=" + key}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"notify", "--nats.url=nats://127.0.0.1:1", "--durable=n", "--driver=webhook", "--webhook.url=http://x"}, "no trusted key"},
		{append(base, "--driver=webhook"), "--driver=webhook needs --webhook.url"},
		{append(base, "--driver=webhook", "--webhook.url=ftp://x"), `url "ftp://x" is not an http(s) URL`},
		{append(base, "--driver=slack"), "--driver=slack needs --slack.url or ROLLGUARD_SLACK_URL"},
		{append(base, "--driver=pagerduty"), "--driver=pagerduty needs --pagerduty.routing-key or ROLLGUARD_PAGERDUTY_ROUTING_KEY"},
		{append(base, "--driver=alertmanager"), "--driver=alertmanager needs --alertmanager.url"},
		{append(base, "--driver=grafana"), "--driver=grafana needs --grafana.url"},
		{append(base, "--driver=webhook", "--webhook.url=http://x", "--http.header=NoColon"), `--http.header "NoColon" is not "Name: value"`},
		{[]string{"notify", "--durable=n", "--driver=webhook", "--webhook.url=http://x", "--verify.key=Ubad"}, "--verify.key"},
	} {
		app := kingpin.New("rollguard", "")
		app.Terminate(nil)
		_, o := notifyFlags(app)
		if _, err := app.Parse(tc.args); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		var stderr strings.Builder
		if code := runNotify(t.Context(), *o, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args[4:], code, stderr.String(), tc.want)
		}
	}
}
