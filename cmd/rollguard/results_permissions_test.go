package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/internal/natstest"
)

// permissionsExample is the nats-server configuration block of
// docs/deploy.md, "NATS permissions": the first fenced block after the
// heading.
func permissionsExample(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## NATS permissions\n")
	if !ok {
		t.Fatal("docs/deploy.md has no NATS permissions section")
	}
	_, block, ok := strings.Cut(section, "\n```\n")
	if ok {
		block, _, ok = strings.Cut(block, "\n```\n")
	}
	if !ok {
		t.Fatal("the NATS permissions section has no configuration block")
	}
	return block
}

// TestNATSPermissionsExample runs the permissions docs/deploy.md gives:
// rollguard and a flagd actuator, each with its own user, take a bad
// canary from detection to a stabilized incident (commands, status,
// incident events, results, KV); the actuator and the deploy tool are
// refused when they publish a command, and the actuator when it publishes
// a status update.
func TestNATSPermissionsExample(t *testing.T) {
	t.Setenv("ROLLGUARD_NATS_PASSWORD", "rg-s3cret")
	t.Setenv("ACTUATOR_NATS_PASSWORD", "act-s3cret")
	t.Setenv("DEPLOYER_NATS_PASSWORD", "dep-s3cret")
	conf := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(conf, []byte(permissionsExample(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	doc, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("the documented configuration does not load: %v", err)
	}
	if len(doc.Users) != 3 {
		t.Fatalf("%d users in the documented configuration, want rollguard, actuator-flagd and deployer", len(doc.Users))
	}
	ns := natstest.Start(t, func(o *server.Options) { o.Users = doc.Users })
	url := ns.ClientURL()

	td := startDaemon(t, pbConfig("  url: "+url+"\n  user: rollguard\n  password: rg-s3cret", "127.0.0.1:0", ""))
	f := newFleet(t, td.otlp)
	f.badWithFlag = true
	app := kingpin.New("rollguard", "")
	app.Terminate(nil)
	_, o := actuateFlags(app)
	if _, err := app.Parse([]string{"actuate", "--nats.url=" + url, "--nats.user=actuator-flagd", "--nats.password=act-s3cret",
		"--durable=actuator-flagd", "--action=flag_kill", "--verify.key-file=" + pubKey(td),
		"--driver=flagd", "--flagd.file=" + f.flags}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	logs := &actuateLog{t: t}
	go func() { code <- runActuate(ctx, *o, logs) }()
	t.Cleanup(func() { cancel(); <-code })

	inc := untilState(t, f, td.get, actions.StateStabilized, 90*time.Second)
	if c := inc.Commands[0]; c.Status != actions.CommandOK || c.Result == nil || c.Result.Actuator != "actuator-flagd" {
		t.Fatalf("flag kill %+v, want actuator-flagd's ok", c)
	}
	if flagOn(t, f.flags, "new-checkout-flow") {
		t.Error("the flag is still on")
	}

	for _, who := range []struct{ user, password, subject string }{
		{"actuator-flagd", "act-s3cret", "rollguard.cmd.flag_kill.checkout"},
		{"actuator-flagd", "act-s3cret", "rollguard.status.checkout"},
		{"deployer", "dep-s3cret", "rollguard.cmd.rollback.checkout"},
	} {
		nc, err := nats.Connect(url, nats.UserInfo(who.user, who.password))
		if err != nil {
			t.Fatal(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		pctx, pcancel := context.WithTimeout(t.Context(), 2*time.Second)
		m := nats.NewMsg(who.subject)
		m.Data = []byte(`{"specversion":"1.0","id":"forged"}`)
		_, err = js.PublishMsg(pctx, m)
		pcancel()
		nc.Close()
		if err == nil {
			t.Errorf("%s published on %s", who.user, who.subject)
		}
	}
	for _, m := range streamMsgs(t, td.stream, "rollguard.") {
		if eventID(m.Data) == "forged" {
			t.Errorf("a forged message reached the stream on %s", m.Subject)
		}
	}
}
