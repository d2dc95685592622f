package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/internal/natstest"
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

// TestDeployWaitsForTheOwner: on a central replica, POST
// /api/v1/deployments is answered once the owner of the service's guard
// has applied the announcement. While another replica holds the lease and
// does not answer, the request is refused with 503 and the replica opens
// nothing; once the lease is this replica's, the announcement is applied
// by its NATS subscription (the owner's path) with the API as its source,
// and the owner's refusals come back with their status and message.
func TestDeployWaitsForTheOwner(t *testing.T) {
	ns := natstest.Start(t)
	js := natstest.JetStream(t, ns.ClientURL())
	ctx := context.Background()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "ROLLGUARD_LEASES", TTL: 2 * time.Second, History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	// A replica that never answers announcements holds the guard: it
	// renews its lease until the test lets it go.
	hold, held := make(chan struct{}), make(chan struct{})
	if _, err := kv.Put(ctx, "checkout", []byte("elsewhere")); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(held)
		for {
			select {
			case <-hold:
				_ = kv.Delete(ctx, "checkout")
				return
			case <-time.After(200 * time.Millisecond):
				_, _ = kv.Put(ctx, "checkout", []byte("elsewhere"))
			}
		}
	}()
	defer func() {
		select {
		case <-hold:
		default:
			close(hold)
		}
		<-held
	}()
	cfg := strings.Replace(testConfig, "nats:\n", "cluster:\n  replica_id: r1\n  lease_ttl: 2s\nnats:\n  url: "+ns.ClientURL()+"\n", 1)
	td := startDaemon(t, cfg)

	announcement := `{"service":"checkout","version":"v2","previous_version":"v1","flags":["announced"]}`
	code, b := td.post("/api/v1/deployments", announcement)
	if want := `no replica owning the guards of service \"checkout\" (checkout) applied the announcement within 7s`; code != 503 || !strings.Contains(string(b), want) {
		t.Fatalf("announcement without an owner: %d %s, want 503 %s", code, b, want)
	}
	if deps := td.engine.Deployments(); len(deps) != 0 {
		t.Fatalf("a replica that does not own the guard opened %+v", deps)
	}

	close(hold)
	<-held
	checkFor(t, 10*time.Second, func() error {
		if !td.owns("checkout") {
			return fmt.Errorf("r1 has not taken the free lease")
		}
		return nil
	})
	code, b = td.post("/api/v1/deployments", announcement)
	var dep detector.Deployment
	if code != 201 || json.Unmarshal(b, &dep) != nil || dep.ID == "" || dep.Source != detector.SourceAPI || len(dep.Flags) != 1 || dep.Flags[0] != "announced" {
		t.Fatalf("announcement to the owner: %d %s", code, b)
	}
	if deps := td.engine.Deployments(); len(deps) != 1 || deps[0].ID != dep.ID {
		t.Fatalf("the owner's deployments %+v, want %s", deps, dep.ID)
	}
	for _, tc := range []struct {
		body string
		code int
		want string
	}{
		{`{"service":"checkout","version":"v3","previous_version":"v3"}`, 400, `version and previous_version are both \"v3\"`},
		{`{"service":"checkout","version":"v3","previous_version":"v2","id":"` + dep.ID + `"}`, 400, `id \"` + dep.ID + `\" is taken by an earlier deployment`},
		{`{"service":"payments","version":"v2","previous_version":"v1"}`, 400, `no guard watches service \"payments\"`},
	} {
		if code, b := td.post("/api/v1/deployments", tc.body); code != tc.code || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s: %d %s, want %d %s", tc.body, code, b, tc.code, tc.want)
		}
	}
}
