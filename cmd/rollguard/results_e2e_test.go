package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/rollguard/rollguard/actions"
)

// TestResultsSignedEndToEnd: rollguard trusts the actuator key in
// playbook.signing.result_key_files. Forged ok results for the flag kill,
// published before the command exists (its id is predictable), one
// unsigned and one signed by a stranger, are refused and counted — before
// this change they waited as orphans and moved the incident to verifying
// the moment the command was issued. The real `rollguard actuate`, signing
// with --sign.seed-file, then kills the flag and its result alone counts:
// the incident stabilizes on the real kill.
func TestResultsSignedEndToEnd(t *testing.T) {
	keys := t.TempDir()
	if _, err := actions.LoadSigner("", keys); err != nil { // the actuator's seed and public key
		t.Fatal(err)
	}
	td := startDaemon(t, pbConfig(embeddedNATS, "127.0.0.1:0",
		"  signing:\n    result_key_files: ["+filepath.Join(keys, "signing.pub")+"]"))
	f := newFleet(t, td.otlp)
	f.badWithFlag = true

	// The canary's first requests open its deployment; its flag kill's id
	// follows from the deployment id.
	var kill string
	checkFor(t, 20*time.Second, func() error {
		f.canary.serve(t, 20)
		for _, d := range td.engine.Deployments() {
			if d.Version == "v2" {
				kill = actions.CommandID(d.ID, actions.ActionFlagKill, "new-checkout-flow")
				return nil
			}
		}
		return fmt.Errorf("no deployment of v2 yet")
	})
	stranger, err := actions.LoadSigner("", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*actions.Signer{nil, stranger} {
		r := actions.ResultData{CommandID: kill, Action: actions.ActionFlagKill, Service: "checkout",
			Status: actions.ResultOK, Detail: "done (forged)", Actuator: "forger", At: time.Now().UTC()}
		ev, err := actions.NewEvent(kill+"/result/forger", actions.ResultType(r.Action), "checkout", r.At, r)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(ev)
		m := actions.Message{Subject: "rollguard.result.flag_kill.checkout", ID: ev.ID, Data: b}
		if err := (actions.JetStreamPublisher{JS: td.js, Signer: s}).Publish(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	checkFor(t, 20*time.Second, func() error {
		u := metricValue(t, td, `rollguard_results_rejected_total{reason="unsigned"}`)
		k := metricValue(t, td, `rollguard_results_rejected_total{reason="untrusted_key"}`)
		if u != 1 || k != 1 {
			return fmt.Errorf("rejected: unsigned %v, untrusted_key %v; want 1 each", u, k)
		}
		return nil
	})

	app := kingpin.New("rollguard", "")
	app.Terminate(nil)
	_, o := actuateFlags(app)
	if _, err := app.Parse([]string{"actuate", "--nats.url=" + natsURL(td), "--durable=flagd", "--name=flagd",
		"--action=flag_kill", "--verify.key-file=" + pubKey(td), "--driver=flagd", "--flagd.file=" + f.flags,
		"--sign.seed-file=" + filepath.Join(keys, "signing.nk")}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() { code <- runActuate(ctx, *o, &actuateLog{t: t}) }()
	t.Cleanup(func() { cancel(); <-code })

	inc := untilState(t, f, td.get, actions.StateStabilized, 90*time.Second)
	if flagOn(t, f.flags, "new-checkout-flow") {
		t.Error("the flag is still on")
	}
	c := inc.Commands[0]
	if c.ID != kill || c.Result == nil || c.Result.Actuator != "flagd" || c.Status != actions.CommandOK {
		t.Fatalf("flag kill %+v, want flagd's ok", c)
	}
	if n := metricValue(t, td, "rollguard_results_unverified_total"); n != 0 {
		t.Errorf("%v results believed unverified with result keys configured", n)
	}
}

// TestResultKeysReload: result keys follow the configuration on reload. A
// key file that cannot be read refuses the reload and keeps the keys in
// use; its twin, a readable file, is applied, and removing the keys goes
// back to believing results unverified.
func TestResultKeysReload(t *testing.T) {
	keys := t.TempDir()
	if _, err := actions.LoadSigner("", keys); err != nil {
		t.Fatal(err)
	}
	withKeys := func(file string) string {
		return pbConfig(embeddedNATS, "127.0.0.1:0", "  signing:\n    result_key_files: ["+file+"]")
	}
	td := startDaemon(t, pbConfig(embeddedNATS, "127.0.0.1:0", ""))
	if td.playbook.ResultKeys() != nil {
		t.Fatal("result keys without any configured")
	}
	reload := func(config string) (int, string) {
		t.Helper()
		if err := os.WriteFile(td.file, []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
		code, b := td.post("/-/reload", "")
		return code, string(b)
	}
	missing := filepath.Join(keys, "missing.pub")
	if code, b := reload(withKeys(missing)); code != http.StatusInternalServerError ||
		!strings.Contains(b, "playbook.signing.result_key_files") || !strings.Contains(b, "missing.pub") {
		t.Fatalf("reload with a missing key file: %d %s", code, b)
	}
	if td.playbook.ResultKeys() != nil {
		t.Fatal("a refused reload changed the result keys")
	}
	if code, b := reload(withKeys(filepath.Join(keys, "signing.pub"))); code != http.StatusOK {
		t.Fatalf("reload with a key file: %d %s", code, b)
	}
	if td.playbook.ResultKeys() == nil {
		t.Fatal("the reloaded result keys are not in use")
	}
	if code, b := reload(pbConfig(embeddedNATS, "127.0.0.1:0", "")); code != http.StatusOK || td.playbook.ResultKeys() != nil {
		t.Fatalf("reload without keys: %d %s; keys %v", code, b, td.playbook.ResultKeys())
	}
}
