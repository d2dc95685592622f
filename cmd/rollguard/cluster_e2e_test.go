package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollguard/rollguard/internal/natstest"
	"github.com/rollguard/rollguard/internal/poll"
)

// clusterTopology is a three-node NATS cluster (R3 streams and KV), three
// central rollguard replicas sharing the guard through leases, and two
// sidecars, each with a stable and a canary service instrumented with the
// OpenTelemetry SDK.
type clusterTopology struct {
	nodes    []*server.Server
	replicas [3]*testDaemon
	stopped  [3]bool
	sidecars [2]*testDaemon
	stables  [2]*service
	canaries [2]*service
	stream   jetstream.Stream
}

const clusterLeaseTTL = 2 * time.Second

func startClusterTopology(t *testing.T, canaryErrRate float64) *clusterTopology {
	t.Helper()
	top := &clusterTopology{nodes: natstest.StartCluster(t, 3)}
	for i := range top.replicas {
		top.replicas[i] = startDaemon(t, top.replicaConfig(i))
	}
	for i := range top.sidecars {
		top.sidecars[i] = startDaemon(t, top.sidecarConfig(i))
	}
	top.startServices(t, canaryErrRate)
	return top
}

// replicaConfig is the configuration of replica i (r1, r2, r3).
func (top *clusterTopology) replicaConfig(i int) string {
	return strings.Replace(testConfig, "nats:\n", fmt.Sprintf("cluster:\n  replica_id: r%d\n  lease_ttl: %s\nnats:\n  url: %s\n  replicas: 3\n",
		i+1, clusterLeaseTTL, natstest.URLs(top.nodes)), 1)
}

// sidecarConfig is the configuration of sidecar i (edge-1, edge-2).
func (top *clusterTopology) sidecarConfig(i int) string {
	cfg := strings.Replace(testConfig, "nats:\n", fmt.Sprintf("mode: sidecar\nsidecar:\n  id: edge-%d\nnats:\n  url: %s\n  replicas: 3\n", i+1, natstest.URLs(top.nodes)), 1)
	return strings.Replace(cfg, "grpc_listen_address: 127.0.0.1:0", `grpc_listen_address: ""`, 1)
}

// startServices starts, once the replicas and sidecars run, a stable and a
// canary service behind each sidecar, and waits until the guard's owner
// has v1 as the stable version.
func (top *clusterTopology) startServices(t *testing.T, canaryErrRate float64) {
	t.Helper()
	top.stream = top.replicas[0].stream
	for i := range top.sidecars {
		top.stables[i] = newService(t, top.sidecars[i].otlp, "checkout", "v1", 0.01, uint64(10+i))
		top.canaries[i] = newService(t, top.sidecars[i].otlp, "checkout", "v2", canaryErrRate, uint64(20+i))
	}
	top.owner(t) // one replica holds the guard before traffic flows
	// v1 is seen first, through both sidecars: it is the stable version.
	// It keeps serving while the replicas catch up, so that a first
	// aggregate published while the NATS cluster was still settling does
	// not leave the owner without data.
	checkFor(t, 30*time.Second, func() error {
		for _, s := range top.stables {
			s.serve(t, 100)
		}
		o := top.replicas[top.owner(t)]
		if deps := o.engine.Deployments(); len(deps) != 0 {
			return fmt.Errorf("a deployment before the canary: %+v", deps)
		}
		if v := o.engine.Guards()[0]; v.Deployment != nil {
			return fmt.Errorf("deployment %+v", v.Deployment)
		}
		if n := metricValue(t, o, `rollguard_detector_aggregates_total{outcome="merged"}`); n < 2 {
			return fmt.Errorf("%v aggregates merged by the owner", n)
		}
		return nil
	})
}

// owner returns the index of the live replica that holds the guard's
// lease, waiting until exactly one does.
func (top *clusterTopology) owner(t *testing.T) int {
	t.Helper()
	var idx int
	checkFor(t, 3*clusterLeaseTTL+5*time.Second, func() error {
		n := 0
		for i, r := range top.replicas {
			if !top.stopped[i] && r.owns("checkout") {
				idx, n = i, n+1
			}
		}
		if n != 1 {
			return fmt.Errorf("%d replicas own the guard", n)
		}
		return nil
	})
	return idx
}

func (top *clusterTopology) round(t *testing.T, n int) {
	t.Helper()
	for i := range top.sidecars {
		top.stables[i].serve(t, n)
		top.canaries[i].serve(t, n)
	}
}

// commandIDs lists the command ids in the stream, failing on any twice.
func (top *clusterTopology) commandIDs(t *testing.T) []string {
	t.Helper()
	return exactlyOnce(t, top.stream)
}

// untilCommand serves rounds until the stream holds a command.
func (top *clusterTopology) untilCommand(t *testing.T, within time.Duration) {
	t.Helper()
	checkFor(t, within, func() error {
		top.round(t, 500)
		if len(top.commandIDs(t)) == 0 {
			return fmt.Errorf("no command yet")
		}
		return nil
	})
	for i := 0; i < 20; i++ { // more evidence, more evaluations: still one command
		top.round(t, 500)
	}
	poll.Holds(t, 500*time.Millisecond, func() error {
		if ids := top.commandIDs(t); len(ids) != 1 {
			return fmt.Errorf("commands %v, want one", ids)
		}
		return nil
	})
}

// TestClusterBadCanary: a bad canary spread across two sidecars is caught
// by the replica that owns the guard, and exactly one flag_kill is published.
func TestClusterBadCanary(t *testing.T) {
	top := startClusterTopology(t, 0.06)
	top.untilCommand(t, 60*time.Second)
	ids := top.commandIDs(t)
	if len(ids) != 1 || !strings.HasSuffix(ids[0], "/flag_kill/new-checkout-flow") {
		t.Fatalf("commands %v, want one flag_kill", ids)
	}
	owner := top.owner(t)
	for i, r := range top.replicas {
		if n := len(r.playbook.Incidents()); (i == owner) != (n == 1) {
			t.Errorf("replica r%d (owner r%d) holds %d incidents", i+1, owner+1, n)
		}
	}
}

// TestClusterHealthyCanary is the twin: nothing is published.
func TestClusterHealthyCanary(t *testing.T) {
	top := startClusterTopology(t, 0.01)
	for i := 0; i < 60; i++ {
		top.round(t, 500)
	}
	o := top.replicas[top.owner(t)]
	o.nextEvaluation(t, "checkout")
	checkFor(t, 10*time.Second, func() error {
		if v := o.verdict("checkout"); v == nil || v.Signals[0].Candidate.Total < 20000 {
			return fmt.Errorf("owner has not seen the canary's traffic: %+v", v)
		}
		return nil
	})
	if ids := top.commandIDs(t); len(ids) != 0 {
		t.Fatalf("healthy canary: commands %v", ids)
	}
}

// TestClusterOwnerDies: the owning replica stops mid-deployment (before
// any regression is proven); another takes the guard within the lease TTL,
// resumes the deployment from its checkpoint, detects the bad canary, and
// exactly one command is published.
func TestClusterOwnerDies(t *testing.T) {
	top := startClusterTopology(t, 0.06)
	first := top.owner(t)
	top.canaries[0].serve(t, 50) // the deployment opens on the owner
	checkFor(t, 10*time.Second, func() error {
		if len(top.replicas[first].engine.Deployments()) == 0 {
			return fmt.Errorf("no deployment yet")
		}
		return nil
	})
	checkFor(t, 10*time.Second, func() error { // the deployment is checkpointed
		for _, r := range top.replicas {
			if r.cluster != nil {
				if _, ok := r.cluster.checkpoints.Deployment(context.Background(), "checkout"); ok {
					return nil
				}
			}
		}
		return fmt.Errorf("no checkpoint of checkout's deployment yet")
	})
	// The kill: its NATS connection drops first, so it cannot hand the
	// lease over; the lease must expire.
	killed := time.Now()
	top.replicas[first].nc.Close()
	top.replicas[first].stop()
	top.stopped[first] = true
	next := top.owner(t)
	took := time.Since(killed)
	t.Logf("r%d took the guard over %s after r%d was killed (lease TTL %s)", next+1, took.Round(time.Millisecond), first+1, clusterLeaseTTL)
	if took > clusterLeaseTTL+clusterLeaseTTL/2+time.Second {
		t.Errorf("takeover took %s, want within the lease TTL and a renewal period", took)
	}
	top.untilCommand(t, 60*time.Second)
	if ids := top.commandIDs(t); len(ids) != 1 {
		t.Fatalf("commands %v, want one", ids)
	}
	deps := top.replicas[next].engine.Deployments()
	if len(deps) == 0 || deps[0].Version != "v2" || deps[0].PreviousVersion != "v1" {
		t.Fatalf("the new owner's deployment %+v, want v1 -> v2 resumed", deps)
	}
}

// TestClusterNATSNodeDies: one NATS node of three goes away during the
// incident; the command stays stored once, and the incident is still saved.
func TestClusterNATSNodeDies(t *testing.T) {
	top := startClusterTopology(t, 0.06)
	top.untilCommand(t, 60*time.Second)
	owner := top.owner(t)
	inc := top.replicas[owner].playbook.Incidents()[0]
	top.nodes[2].Shutdown()
	top.nodes[2].WaitForShutdown()
	for i := 0; i < 30; i++ {
		top.round(t, 500)
	}
	poll.Holds(t, time.Second, func() error {
		if ids := top.commandIDs(t); len(ids) != 1 {
			return fmt.Errorf("commands %v after a node died, want the one flag_kill", ids)
		}
		return nil
	})
	// Still one owner, still the incident, and its record is in KV.
	o := top.replicas[top.owner(t)]
	got, ok := o.playbook.Incident(inc.ID)
	if !ok {
		t.Fatalf("incident %s lost", inc.ID)
	}
	kv, err := top.replicas[owner].js.KeyValue(context.Background(), "ROLLGUARD_INCIDENTS")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(context.Background(), got.ID); err != nil {
		t.Fatalf("incident not in KV after a node died: %v", err)
	}
}
