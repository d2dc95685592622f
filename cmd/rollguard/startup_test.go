package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/rollguard/rollguard/internal/natstest"
)

// TestUntilReady: a creation that fails is tried again until it succeeds,
// each failure logged; one marked errGiveUp is not retried; and a stop
// ends the wait with the last error.
func TestUntilReady(t *testing.T) {
	log := hclog.New(&hclog.LoggerOptions{Output: testWriter{t}})
	calls := 0
	v, err := untilReady(context.Background(), log, "stream X", func(context.Context) (string, error) {
		if calls++; calls < 3 {
			return "", context.DeadlineExceeded
		}
		return "ready", nil
	})
	if v != "ready" || err != nil || calls != 3 {
		t.Errorf("after two timeouts: %q, %v after %d calls, want ready after 3", v, err, calls)
	}

	calls = 0
	refused := errors.New("nats: Authorization Violation")
	if _, err := untilReady(context.Background(), log, "nats", func(context.Context) (int, error) {
		calls++
		return 0, errGiveUp{refused}
	}); err != refused || calls != 1 {
		t.Errorf("refused credentials: %v after %d calls, want the refusal at once", err, calls)
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	_, err = untilReady(ctx, log, "stream X", func(context.Context) (int, error) { return 0, context.DeadlineExceeded })
	if err == nil || !strings.Contains(err.Error(), "stopped while waiting for stream X") {
		t.Errorf("stopped: %v", err)
	}
}

// TestStartupWaitsForLateNATS: rollguard started before its NATS server
// waits for it instead of exiting; meanwhile its web listener answers the
// probes (healthy, not ready: waiting for NATS streams), and once the
// server is up on the configured port rollguard starts and is ready.
func TestStartupWaitsForLateNATS(t *testing.T) {
	port := freePort(t)
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	file := writeConfig(t, strings.Replace(testConfig, "nats:\n", fmt.Sprintf("nats:\n  url: nats://127.0.0.1:%d\n", port), 1))
	o := testDaemonOptions(t, file)
	o.WebListenAddress = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	type opened struct {
		d   *daemon
		err error
	}
	done := make(chan opened, 1)
	go func() {
		d, err := newDaemon(o)
		done <- opened{d, err}
	}()
	probe := func(path string) (int, string) {
		resp, err := http.Get("http://" + o.WebListenAddress + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	checkFor(t, 10*time.Second, func() error {
		if code, body := probe("/-/ready"); code != 503 || !strings.Contains(body, "waiting for NATS streams") {
			return fmt.Errorf("/-/ready while NATS is down: %d %s", code, body)
		}
		if code, body := probe("/-/healthy"); code != 200 {
			return fmt.Errorf("/-/healthy while NATS is down: %d %s", code, body)
		}
		return nil
	})
	select {
	case r := <-done:
		t.Fatalf("start-up ended before the NATS server was up: %v", r.err)
	default:
	}
	go ns.Start()
	var r opened
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("start-up still waiting 30s after the NATS server started")
	}
	if r.err != nil {
		t.Fatalf("start daemon: %v", r.err)
	}
	td := runDaemon(t, file, r.d)
	if code, b := td.get("/-/ready"); code != 200 || td.web != "http://"+o.WebListenAddress {
		t.Fatalf("/-/ready on %s: %d %s", td.web, code, b)
	}
}

// TestClusterParallelStart: three replicas and two sidecars started at once
// on a fresh three-node NATS cluster, racing to create the same streams
// and buckets (podManagementPolicy: Parallel), all become ready, and the
// bad canary gets exactly one flag_kill.
func TestClusterParallelStart(t *testing.T) {
	top := &clusterTopology{nodes: natstest.StartCluster(t, 3)}
	var configs []string
	for i := range top.replicas {
		configs = append(configs, top.replicaConfig(i))
	}
	for i := range top.sidecars {
		configs = append(configs, top.sidecarConfig(i))
	}
	files := make([]string, len(configs))
	for i, c := range configs {
		files[i] = writeConfig(t, c)
	}
	daemons := make([]*daemon, len(files))
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	for i, f := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			daemons[i], errs[i] = newDaemon(testDaemonOptions(t, f))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("daemon %d of %d started at once: %v", i+1, len(files), err)
		}
	}
	for i, d := range daemons {
		td := runDaemon(t, files[i], d)
		if i < len(top.replicas) {
			top.replicas[i] = td
		} else {
			top.sidecars[i-len(top.replicas)] = td
		}
	}
	top.startServices(t, 0.06)
	top.untilCommand(t, 60*time.Second)
	ids := top.commandIDs(t)
	if len(ids) != 1 || !strings.HasSuffix(ids[0], "/flag_kill/new-checkout-flow") {
		t.Fatalf("commands %v, want one flag_kill", ids)
	}
}
