package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/rollguard/rollguard/detector"
)

// TestDeployOverNATS: an announcement on rollguard.deploy.<service> opens
// the deployment and the request is answered; bad ones are refused with the
// reason and change nothing.
func TestDeployOverNATS(t *testing.T) {
	td := startDaemon(t, testConfig)
	for _, tc := range []struct {
		subject, body, wantErr string
	}{
		{"rollguard.deploy.checkout", `{"version":"v2"`, "decode deployment: unexpected EOF"},
		{"rollguard.deploy.checkout", `{"service":"cart","version":"v2","previous_version":"v1"}`, `service "cart" does not match the subject's "checkout"`},
		{"rollguard.deploy.payments", `{"version":"v2","previous_version":"v1"}`, `no guard watches service "payments": add a guard for it to the configuration`},
		{"rollguard.deploy.checkout", `{"version":"v2","previous_version":"v1","flags":["f1"],"commit":"c2"}`, ""},
	} {
		m, err := td.client.Request(tc.subject, []byte(tc.body), 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", tc.body, err)
		}
		var reply struct {
			Status, Error string
			Deployment    detector.Deployment
		}
		if err := json.Unmarshal(m.Data, &reply); err != nil {
			t.Fatalf("reply %s: %v", m.Data, err)
		}
		switch {
		case tc.wantErr != "" && (reply.Status != "error" || reply.Error != tc.wantErr):
			t.Errorf("%s: reply %+v, want error %q", tc.body, reply, tc.wantErr)
		case tc.wantErr == "" && (reply.Status != "ok" || reply.Deployment.Service != "checkout" || reply.Deployment.Commit != "c2"):
			t.Errorf("%s: reply %+v", tc.body, reply)
		}
	}
	if code, b := td.get("/api/v1/deployments"); code != 200 || strings.Count(string(b), `"id"`) != 1 || !strings.Contains(string(b), `"f1"`) {
		t.Errorf("deployments after NATS announcements: %s", b)
	}
}

// TestDeployCLI: `rollguard deploy` announces through the API and reports
// a refusal with its reason and exit code 1.
func TestDeployCLI(t *testing.T) {
	td := startDaemon(t, testConfig)
	var out, errb bytes.Buffer
	code := rollguard([]string{"deploy", "--web.url=" + td.web, "--service=checkout", "--version=v2",
		"--previous-version=v1", "--flag=a", "--flag=b", "--migration=irreversible"}, &out, &errb)
	var d detector.Deployment
	if code != 0 || json.Unmarshal(out.Bytes(), &d) != nil || d.Migration != "irreversible" || len(d.Flags) != 2 {
		t.Fatalf("exit %d, out %s, err %s", code, out.String(), errb.String())
	}
	out.Reset()
	errb.Reset()
	code = rollguard([]string{"deploy", "--web.url=" + td.web, "--service=nope", "--version=v2", "--previous-version=v1"}, &out, &errb)
	if want := "rollguard: announce deployment: no guard watches service \"nope\": add a guard for it to the configuration (HTTP 400)\n"; code != 1 || errb.String() != want {
		t.Errorf("exit %d, stderr %q, want %q", code, errb.String(), want)
	}
}

// TestDeployDefaults: without --web.url, `rollguard deploy` announces to
// the default address, as approve and postmortem do, and leaves out what
// it was not told. (kingpin sets no default when a flag named version is
// on the command line, and deploy's --version always is.)
func TestDeployDefaults(t *testing.T) {
	app := kingpin.New("rollguard", "")
	_, o := addDeployCommand(app)
	if _, err := app.Parse([]string{"deploy", "--service=checkout", "--version=v3"}); err != nil {
		t.Fatal(err)
	}
	if o.client.url != "http://127.0.0.1:9469" {
		t.Errorf("web url %q, want the default http://127.0.0.1:9469", o.client.url)
	}
	got, _ := json.Marshal(o.announcement())
	if want := `{"service":"checkout","version":"v3"}`; string(got) != want {
		t.Errorf("announcement %s, want %s", got, want)
	}
}
