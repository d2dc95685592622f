package notify

import (
	"fmt"
	"testing"
	"time"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/internal/poll"
	"github.com/rollguard/rollguard/notify/amtest"
)

// activeAlerts waits until the Alertmanager holds exactly the incident's
// alerts at the given severities (none: no active alert), and returns them.
func activeAlerts(t *testing.T, am *amtest.Alertmanager, inc string, severities ...string) []amtest.Alert {
	t.Helper()
	var got []amtest.Alert
	poll.Until(t, 20*time.Second, func() error {
		var err error
		if got, err = am.Alerts(fmt.Sprintf("incident=%q", inc)); err != nil {
			return err
		}
		var sev []string
		for _, a := range got {
			if a.Status.State != "active" {
				return fmt.Errorf("alert %v is %s", a.Labels, a.Status.State)
			}
			sev = append(sev, a.Labels["severity"])
		}
		if fmt.Sprint(sev) != fmt.Sprint(severities) {
			return fmt.Errorf("active alerts at severities %v, want %v", sev, severities)
		}
		return nil
	})
	return got
}

// TestAlertmanagerAlertLifecycle runs against a real Alertmanager: an open
// incident's status update makes one active alert with rollguard's text;
// a restarted notifier reads it back, so after the Alertmanager restarts
// too (it keeps no alerts) the re-send brings it back; escalation moves it to critical (the error one resolved); the
// stabilized update resolves it.
func TestAlertmanagerAlertLifecycle(t *testing.T) {
	am := amtest.Start(t)
	e := newEnv(t)
	driver := func() *Alertmanager {
		d, err := NewAlertmanager(AlertmanagerOptions{URLs: []string{am.URL}, WebURL: "http://rollguard.example:9469/",
			ResendInterval: 300 * time.Millisecond, HTTP: HTTPOptions{Backoff: 10 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	stop := e.run(t, Options{Durable: "alertmanager"}, driver())

	e.status(t, e.signer, "inc-d1", 1, actions.StateContaining)
	a := activeAlerts(t, am, "inc-d1", "error")[0]
	want := map[string]string{"alertname": AlertName, "incident": "inc-d1", "service": "checkout", "guard": "checkout", "severity": "error"}
	if fmt.Sprint(a.Labels) != fmt.Sprint(want) {
		t.Errorf("labels %v, want %v", a.Labels, want)
	}
	if s := a.Annotations["summary"]; s != "[containing] checkout v1 -> v2 (incident inc-d1): errors regressed" {
		t.Errorf("summary %q", s)
	}
	if a.GeneratorURL != "http://rollguard.example:9469/incidents/inc-d1" || a.Annotations["incident_url"] != a.GeneratorURL {
		t.Errorf("generatorURL %q, incident_url %q", a.GeneratorURL, a.Annotations["incident_url"])
	}
	// The status update says the next one comes within 15m: the alert
	// lasts until then and one resend interval more.
	if until := time.Until(a.EndsAt); until < 14*time.Minute {
		t.Errorf("endsAt %s is only %s ahead", a.EndsAt, until)
	}

	// A notifier that restarted reads the open incidents' alerts back from
	// the Alertmanager and keeps sending them: after the Alertmanager
	// restarts too, the alert is back without a new status update.
	stop()
	d := driver()
	e.run(t, Options{Durable: "alertmanager"}, d)
	poll.Until(t, 10*time.Second, func() error {
		d.mu.Lock()
		defer d.mu.Unlock()
		if al, ok := d.open["inc-d1"]; !ok || al.status.Internal != a.Annotations["summary"] || !al.startsAt.Equal(a.StartsAt) {
			return fmt.Errorf("open incidents read back: %+v", d.open)
		}
		return nil
	})
	am.Restart()
	b := activeAlerts(t, am, "inc-d1", "error")[0]
	if fmt.Sprint(b.Labels) != fmt.Sprint(a.Labels) || fmt.Sprint(b.Annotations) != fmt.Sprint(a.Annotations) || !b.EndsAt.Equal(a.EndsAt) {
		t.Errorf("alert sent again\n%+v\nwant\n%+v", b, a)
	}

	e.status(t, e.signer, "inc-d1", 2, actions.StateEscalated)
	activeAlerts(t, am, "inc-d1", "critical")

	e.status(t, e.signer, "inc-d1", 3, actions.StateStabilized)
	activeAlerts(t, am, "inc-d1")
	// Resolved stays resolved: the re-sends stop with the incident.
	poll.Holds(t, time.Second, func() error {
		if got, err := am.Alerts(`incident="inc-d1"`); err != nil || len(got) != 0 {
			return fmt.Errorf("alerts %v (%v) after the incident stabilized", got, err)
		}
		return nil
	})
}
