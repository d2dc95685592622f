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
// after the Alertmanager restarts (it keeps no alerts) the re-send brings
// it back; escalation moves it to critical (the error one resolved); the
// stabilized update resolves it.
func TestAlertmanagerAlertLifecycle(t *testing.T) {
	am := amtest.Start(t)
	e := newEnv(t)
	d, err := NewAlertmanager(AlertmanagerOptions{URLs: []string{am.URL}, WebURL: "http://rollguard.example:9469/",
		ResendInterval: 300 * time.Millisecond, HTTP: HTTPOptions{Backoff: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	e.run(t, Options{Durable: "alertmanager"}, d)

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

	am.Restart()
	activeAlerts(t, am, "inc-d1", "error")

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
