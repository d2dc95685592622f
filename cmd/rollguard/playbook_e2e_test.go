package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/actions/actuator"
)

// playbookConfig runs the playbook on a test's time scale. %NATS% is the
// nats block.
const playbookConfig = `
global:
  evaluation_interval: 100ms
  no_data_timeout: 30s
nats:
%NATS%
otlp:
  http_listen_address: %OTLP%
  grpc_listen_address: ""
playbook:
  containment_timeout: 6s
  recovery_timeout: 8s
  healthy_hold: 2s
  ack_timeout: 4s
  status_interval: 1m
  close_after: 1h
%PLAYBOOK%
guards:
  - name: checkout
    service: checkout
    alpha: 0.001
    flags: [new-checkout-flow]
    signals:
      - name: errors
`

const embeddedNATS = `  embedded:
    host: 127.0.0.1
    port: -1`

func pbConfig(nats, otlp, playbook string) string {
	base := playbookConfig
	if strings.Contains(playbook, "status_interval") {
		base = strings.Replace(base, "  status_interval: 1m\n", "", 1)
	}
	return strings.NewReplacer("%NATS%", nats, "%OTLP%", otlp, "%PLAYBOOK%", playbook).Replace(base)
}

// flagdFile writes a flagd flag-definition file with the flag on.
func flagdFile(t *testing.T) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "flags.json")
	doc := `{"$schema": "https://flagd.dev/schema/v0/flags.json", "flags": {
  "new-checkout-flow": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on",
    "targeting": {"fractional": [["on", 50], ["off", 50]]}},
  "dark-mode": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}}}`
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// flagOn reads the flag as a flagd provider would: a disabled flag or an
// off default variant serves the old code path.
func flagOn(t *testing.T, file, flag string) bool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Flags map[string]struct {
			State          string          `json:"state"`
			Variants       map[string]bool `json:"variants"`
			DefaultVariant string          `json:"defaultVariant"`
		} `json:"flags"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("flag file: %v", err)
	}
	f, ok := doc.Flags[flag]
	return ok && f.State != "DISABLED" && f.Variants[f.DefaultVariant]
}

// fleet is a service's stable and canary instances, reporting through the
// OpenTelemetry SDK. The canary is bad while the flag is on (badWithFlag) or
// always (badAlways); after a rollback (the marker file exists) the stable
// version takes the canary's traffic.
type fleet struct {
	t              *testing.T
	stable, canary *service
	flags, marker  string
	badWithFlag    bool
	badAlways      bool
}

func newFleet(t *testing.T, endpoint string) *fleet {
	f := &fleet{t: t, stable: newService(t, endpoint, "checkout", "v1", 0.01, 1),
		canary: newService(t, endpoint, "checkout", "v2", 0.01, 2),
		flags:  flagdFile(t), marker: filepath.Join(t.TempDir(), "rolled-back")}
	f.stable.serve(t, 500) // v1 is seen first: it becomes the stable version
	return f
}

// round serves one batch of requests on every instance still running.
func (f *fleet) round() {
	f.stable.serve(f.t, 500)
	if _, err := os.Stat(f.marker); err == nil {
		f.stable.serve(f.t, 500)
		return
	}
	f.canary.errRate = 0.01
	if f.badAlways || (f.badWithFlag && flagOn(f.t, f.flags, "new-checkout-flow")) {
		f.canary.errRate = 0.06
	}
	f.canary.serve(f.t, 500)
}

// startActuator runs the reference actuator in-process with one driver,
// trusting the key the daemon signs with.
func startActuator(t *testing.T, url, pubFile, durable string, acts []string, d actuator.Driver) {
	t.Helper()
	var pub []byte
	checkFor(t, 10*time.Second, func() (err error) { pub, err = os.ReadFile(pubFile); return err })
	v, err := actions.NewVerifier(string(pub))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := actuator.Run(ctx, actuator.Options{JS: js, Durable: durable, Actions: acts, Verifier: v,
			Logger: hclog.New(&hclog.LoggerOptions{Name: durable, Output: testWriter{t}, Level: hclog.Info})}, d); err != nil && ctx.Err() == nil {
			t.Errorf("actuator %s: %v", durable, err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done; nc.Close() })
}

// flagdActuator kills flags in the fleet's flag file.
func flagdActuator(t *testing.T, url, pubFile string, f *fleet) {
	d, err := actuator.NewFlagd(f.flags, "")
	if err != nil {
		t.Fatal(err)
	}
	startActuator(t, url, pubFile, "flagd", []string{actions.ActionFlagKill}, d)
}

// rollbackActuator runs a deploy script that rolls the canary back.
func rollbackActuator(t *testing.T, url, pubFile string, f *fleet) {
	script := filepath.Join(t.TempDir(), "rollback.sh")
	body := "#!/bin/sh\nset -e\n[ \"$ROLLGUARD_ACTION\" = rollback ]\necho \"$ROLLGUARD_VERSION\" > " + f.marker + "\necho rolled back to $ROLLGUARD_VERSION\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := actuator.NewExec([]string{script}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	startActuator(t, url, pubFile, "deploy", []string{actions.ActionRollback}, d)
}

// incident returns the service's incident from the API, or nil.
func incidentOf(t *testing.T, get func(string) (int, []byte)) *actions.Incident {
	t.Helper()
	code, b := get("/api/v1/incidents")
	if code != 200 {
		return nil
	}
	var body struct{ Incidents []actions.Incident }
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("decode incidents: %v", err)
	}
	if len(body.Incidents) > 1 {
		t.Fatalf("%d incidents for one deployment", len(body.Incidents))
	}
	if len(body.Incidents) == 0 {
		return nil
	}
	return &body.Incidents[0]
}

// untilState serves rounds until the incident reaches state.
func untilState(t *testing.T, f *fleet, get func(string) (int, []byte), state string, within time.Duration) actions.Incident {
	t.Helper()
	var inc *actions.Incident
	checkFor(t, within, func() error {
		f.round()
		if inc = incidentOf(t, get); inc == nil || inc.State != state {
			if inc == nil {
				return fmt.Errorf("no incident yet")
			}
			return fmt.Errorf("incident %s: %s", inc.State, inc.Reason)
		}
		return nil
	})
	return *inc
}

// streamMsgs returns the stream's messages under subject prefix.
func streamMsgs(t *testing.T, st jetstream.Stream, prefix string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		if m, err := st.GetMsg(ctx, seq); err == nil && strings.HasPrefix(m.Subject, prefix) {
			out = append(out, m)
		}
	}
	return out
}

// exactlyOnce checks that every command id is in the stream once, and
// returns the ids in order.
func exactlyOnce(t *testing.T, st jetstream.Stream) []string {
	t.Helper()
	seen := map[string]int{}
	var ids []string
	for _, m := range streamMsgs(t, st, "rollguard.cmd.") {
		id := eventID(m.Data)
		if seen[id]++; seen[id] == 1 {
			ids = append(ids, id)
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("command %s is in the stream %d times", id, n)
		}
	}
	for _, m := range streamMsgs(t, st, "rollguard.") {
		if id := eventID(m.Data); strings.Contains(id, "/event/") || strings.Contains(id, "/status/") {
			if seen[id]++; seen[id] > 1 {
				t.Errorf("%s is in the stream %d times", id, seen[id])
			}
		}
	}
	return ids
}

// states lists the incident's state changes in order.
func states(inc actions.Incident) []string {
	var out []string
	for _, e := range inc.Timeline {
		if e.Kind == actions.EntryState && e.To != "" {
			out = append(out, e.To)
		}
	}
	return out
}

func pubKey(td *testDaemon) string {
	return filepath.Join(filepath.Dir(td.file), "data", "signing.pub")
}

func natsURL(td *testDaemon) string { return td.ns.ClientURL() }

// TestPlaybookFlagKillHeals is the playbook's main path: the flag kill
// reaches the flagd actuator, the file it writes turns the canary healthy,
// recovery holds, and the incident and its post-mortem tell the story.
func TestPlaybookFlagKillHeals(t *testing.T) {
	td := startDaemon(t, pbConfig(embeddedNATS, "127.0.0.1:0", ""))
	f := newFleet(t, td.otlp)
	f.badWithFlag = true
	flagdActuator(t, natsURL(td), pubKey(td), f)

	inc := untilState(t, f, td.get, actions.StateStabilized, 90*time.Second)
	if flagOn(t, f.flags, "new-checkout-flow") || !flagOn(t, f.flags, "dark-mode") {
		t.Fatal("the flag file does not have the killed flag off and the other one on")
	}
	if ids := exactlyOnce(t, td.stream); len(ids) != 1 || !strings.HasSuffix(ids[0], "/flag_kill/new-checkout-flow") {
		t.Fatalf("commands %v, want the one flag kill", ids)
	}
	want := []string{"deployed", actions.StateWatching, actions.StateContaining, actions.StateVerifying, actions.StateStabilized}
	if got := states(inc); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("states %v, want %v", got, want)
	}
	c := inc.Commands[0]
	if c.Status != actions.CommandOK || c.Result == nil || c.Result.Actuator != "flagd" {
		t.Fatalf("command %+v", c)
	}
	if !(inc.DetectedAt.After(inc.Deployment.StartedAt) && inc.MitigatedAt.After(inc.DetectedAt) && inc.RecoveredAt.Sub(*inc.MitigatedAt) >= 2*time.Second) {
		t.Fatalf("detected %v mitigated %v recovered %v", inc.DetectedAt, inc.MitigatedAt, inc.RecoveredAt)
	}
	code, md := td.get("/api/v1/incidents/" + inc.ID + "/postmortem")
	if code != 200 {
		t.Fatalf("post-mortem: %d %s", code, md)
	}
	for _, s := range []string{inc.ID, "flag_kill", "new-checkout-flow", "stabilized"} {
		if !strings.Contains(string(md), s) {
			t.Errorf("post-mortem lacks %q:\n%s", s, md)
		}
	}
	checkFor(t, 5*time.Second, func() error {
		if got := len(streamMsgs(t, td.stream, "rollguard.status.checkout")); got != 3 {
			return fmt.Errorf("%d status updates, want one per state change (containing, verifying, stabilized)", got)
		}
		return nil
	})
}

// TestPlaybookHealthyCanaryTwin runs the same fleet and actuators with a
// healthy canary: no incident, no command, the flag stays on.
func TestPlaybookHealthyCanaryTwin(t *testing.T) {
	td := startDaemon(t, pbConfig(embeddedNATS, "127.0.0.1:0", ""))
	f := newFleet(t, td.otlp)
	flagdActuator(t, natsURL(td), pubKey(td), f)
	for i := 0; i < 60; i++ {
		f.round()
	}
	td.nextEvaluation(t, "checkout")
	if inc := incidentOf(t, td.get); inc != nil || len(streamMsgs(t, td.stream, "rollguard.")) != 0 || !flagOn(t, f.flags, "new-checkout-flow") {
		t.Fatalf("healthy canary: incident %+v", inc)
	}
}

// alwaysBadWithActuators starts a daemon, a fleet whose canary is bad
// whatever the flag, and the flagd and rollback actuators.
func alwaysBadWithActuators(t *testing.T) (*testDaemon, *fleet) {
	td := startDaemon(t, pbConfig(embeddedNATS, "127.0.0.1:0", ""))
	f := newFleet(t, td.otlp)
	f.badAlways = true
	flagdActuator(t, natsURL(td), pubKey(td), f)
	rollbackActuator(t, natsURL(td), pubKey(td), f)
	return td, f
}

// TestPlaybookRollbackWhenKillDoesNotHeal: the bug is not behind the flag,
// so the kill does not help; rollguard rolls back and recovery follows.
func TestPlaybookRollbackWhenKillDoesNotHeal(t *testing.T) {
	td, f := alwaysBadWithActuators(t)

	inc := untilState(t, f, td.get, actions.StateStabilized, 120*time.Second)
	ids := exactlyOnce(t, td.stream)
	if len(ids) != 2 || !strings.HasSuffix(ids[0], "/flag_kill/new-checkout-flow") || !strings.HasSuffix(ids[1], "/rollback/v1") {
		t.Fatalf("commands %v, want flag kill then rollback", ids)
	}
	if b, err := os.ReadFile(f.marker); err != nil || strings.TrimSpace(string(b)) != "v1" {
		t.Fatalf("deploy script did not roll back to v1: %q %v", b, err)
	}
	got := strings.Join(states(inc), ",")
	if !strings.Contains(got, "containing,verifying,rolling_back,verifying,stabilized") {
		t.Fatalf("states %s", got)
	}
}

// TestPlaybookIrreversibleMigration: a deployment with an irreversible
// migration is contained with the flag kill and handed to people; rollback
// is never sent.
func TestPlaybookIrreversibleMigration(t *testing.T) {
	td, f := alwaysBadWithActuators(t)
	if code, b := td.post("/api/v1/deployments", `{"service":"checkout","version":"v2","previous_version":"v1","flags":["new-checkout-flow"],"migration":"irreversible"}`); code != 201 && code != 200 {
		t.Fatalf("announce: %d %s", code, b)
	}
	inc := untilState(t, f, td.get, actions.StateEscalated, 90*time.Second)
	if !strings.Contains(inc.Reason, "irreversible migration") {
		t.Fatalf("escalated without saying why: %q", inc.Reason)
	}
	for i := 0; i < 20; i++ {
		f.round()
	}
	if ids := exactlyOnce(t, td.stream); len(ids) != 1 || strings.Contains(ids[0], "rollback") {
		t.Fatalf("commands %v, want only the flag kill", ids)
	}
	if _, err := os.Stat(f.marker); err == nil {
		t.Fatal("rolled back an irreversible migration")
	}
}

// TestPlaybookApprovalDryRunAndCadence: a held flag kill waits for a
// person while status updates keep their cadence; approved, it goes out. In
// dry-run the actuator reports without touching the flag.
func TestPlaybookApprovalDryRunAndCadence(t *testing.T) {
	td := startDaemon(t, pbConfig(embeddedNATS, "127.0.0.1:0", "  approval: [flag_kill]\n  dry_run: true\n  status_interval: 1s"))
	f := newFleet(t, td.otlp)
	f.badWithFlag = true
	flagdActuator(t, natsURL(td), pubKey(td), f)
	inc := untilState(t, f, td.get, actions.StateWatching, 60*time.Second)
	if len(streamMsgs(t, td.stream, "rollguard.cmd.")) != 0 || inc.Commands[0].Status != actions.CommandHeld {
		t.Fatalf("a command needing approval went out: %+v", inc.Commands)
	}
	before := len(streamMsgs(t, td.stream, "rollguard.status.checkout"))
	time.Sleep(3500 * time.Millisecond)
	if n := len(streamMsgs(t, td.stream, "rollguard.status.checkout")) - before; n < 2 || n > 5 {
		t.Fatalf("%d status updates in 3.5s at a 1s interval", n)
	}
	if code, b := td.post("/api/v1/approvals", `{"id":"`+inc.ID+`","by":"alice"}`); code != 200 {
		t.Fatalf("approve: %d %s", code, b)
	}
	checkFor(t, 20*time.Second, func() error {
		inc = *incidentOf(t, td.get)
		if c := inc.Commands[0]; c.Result == nil {
			return fmt.Errorf("command %s: no result yet", c.Status)
		}
		return nil
	})
	c := inc.Commands[0]
	if c.ApprovedBy != "alice" || !c.DryRun || !c.Result.DryRun || c.Status != actions.CommandOK {
		t.Fatalf("approved dry-run command %+v result %+v", c, c.Result)
	}
	if !flagOn(t, f.flags, "new-checkout-flow") {
		t.Fatal("a dry-run flag kill changed the flag")
	}
}

// externalNATS is a NATS server the test can stop and start again on the
// same port and store.
type externalNATS struct {
	t    *testing.T
	opts server.Options
	ns   *server.Server
}

func startExternalNATS(t *testing.T) *externalNATS {
	t.Helper()
	e := &externalNATS{t: t, opts: server.Options{Host: "127.0.0.1", Port: freePort(t), JetStream: true, StoreDir: t.TempDir(), NoSigs: true}}
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *externalNATS) start() {
	e.t.Helper()
	opts := e.opts
	ns, err := server.NewServer(&opts)
	if err != nil {
		e.t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		e.t.Fatal("nats not ready")
	}
	e.ns = ns
}

func (e *externalNATS) stop() {
	if e.ns != nil {
		e.ns.Shutdown()
		e.ns.WaitForShutdown()
		e.ns = nil
	}
}

func (e *externalNATS) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", e.opts.Port) }

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestPlaybookSurvivesNATSOutage: NATS goes away mid-incident; the
// escalation to rollback waits in the outbox and is delivered once NATS is
// back, and no command is in the stream twice.
func TestPlaybookSurvivesNATSOutage(t *testing.T) {
	e := startExternalNATS(t)
	td := startDaemon(t, pbConfig("  url: "+e.url(), "127.0.0.1:0", ""))
	f := newFleet(t, td.otlp)
	f.badWithFlag = true
	untilState(t, f, td.get, actions.StateContaining, 60*time.Second)
	checkFor(t, 10*time.Second, func() error {
		if n := len(streamMsgs(t, td.stream, "rollguard.cmd.")); n != 1 {
			return fmt.Errorf("%d commands in the stream", n)
		}
		return nil
	})
	e.stop()
	// No actuator answered the kill: after ack_timeout rollguard takes the
	// next step while NATS is down.
	untilState(t, f, td.get, actions.StateRollingBack, 30*time.Second)
	e.start()
	flagdActuator(t, e.url(), pubKey(td), f)
	rollbackActuator(t, e.url(), pubKey(td), f)
	inc := untilState(t, f, td.get, actions.StateStabilized, 90*time.Second)
	ids := exactlyOnce(t, td.stream)
	if len(ids) != 2 || !strings.HasSuffix(ids[1], "/rollback/v1") {
		t.Fatalf("commands %v, want the flag kill and the rollback once each", ids)
	}
	if inc.Commands[1].Status != actions.CommandOK {
		t.Fatalf("rollback %+v", inc.Commands[1])
	}
}

// TestMain lets a test run rollguard as a child process (the test binary
// itself), so that it can be killed with SIGKILL.
func TestMain(m *testing.M) {
	if args := os.Getenv("ROLLGUARD_E2E_CHILD"); args != "" {
		var a []string
		if err := json.Unmarshal([]byte(args), &a); err != nil {
			panic(err)
		}
		os.Exit(rollguard(a, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestPlaybookSurvivesKill: rollguard is killed (SIGKILL) mid-incident; the
// restarted process restores the incident from KV, takes the actuator's
// result, verifies recovery, and sends no command twice.
func TestPlaybookSurvivesKill(t *testing.T) {
	e := startExternalNATS(t)
	dir := t.TempDir()
	web, otlpPort := fmt.Sprintf("127.0.0.1:%d", freePort(t)), freePort(t)
	file := writeConfig(t, pbConfig("  url: "+e.url(), fmt.Sprintf("127.0.0.1:%d", otlpPort), ""))
	get := func(path string) (int, []byte) {
		resp, err := http.Get("http://" + web + path)
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	start := func() *exec.Cmd {
		args, _ := json.Marshal([]string{"run", "--config.file=" + file, "--storage.path=" + filepath.Join(dir, "data"), "--web.listen-address=" + web})
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "ROLLGUARD_E2E_CHILD="+string(args))
		cmd.Stdout, cmd.Stderr = testWriter{t}, testWriter{t}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		checkFor(t, 30*time.Second, func() error {
			if code, _ := get("/-/ready"); code != 200 {
				return fmt.Errorf("child not ready: %d", code)
			}
			return nil
		})
		return cmd
	}
	nc, err := nats.Connect(e.url(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)

	first := start()
	f := newFleet(t, fmt.Sprintf("http://127.0.0.1:%d/v1/metrics", otlpPort))
	f.badWithFlag = true
	untilState(t, f, get, actions.StateContaining, 60*time.Second)
	st, err := js.Stream(context.Background(), "ROLLGUARD")
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, func() error {
		if n := len(streamMsgs(t, st, "rollguard.cmd.")); n != 1 {
			return fmt.Errorf("%d commands in the stream", n)
		}
		return nil
	})
	killedAt := time.Now()
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()

	second := start()
	t.Cleanup(func() { _ = second.Process.Signal(syscall.SIGTERM); _ = second.Wait() })
	flagdActuator(t, e.url(), filepath.Join(dir, "data", "signing.pub"), f)
	inc := untilState(t, f, get, actions.StateStabilized, 90*time.Second)
	if ids := exactlyOnce(t, st); len(ids) != 1 {
		t.Fatalf("commands %v after the restart, want the one flag kill", ids)
	}
	if !inc.OpenedAt.Before(killedAt) || inc.Commands[0].Status != actions.CommandOK {
		t.Fatalf("incident opened %v (killed at %v), command %+v", inc.OpenedAt, killedAt, inc.Commands[0])
	}
}
