package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/internal/natstest"
	"github.com/rollguard/rollguard/internal/poll"
)

// Handovers without amnesia (issue 14): a replica that takes a guard over
// goes on from where its owner was — the deployment as it opened, the ack
// deadline of the command in flight, the results stored meanwhile.

// handoverOptions change the cluster of startClusterTopology for a test.
type handoverOptions struct {
	errRate float64
	ttl     time.Duration
	// replica edits the replicas' configuration (the sidecars keep theirs).
	replica func(cfg string) string
}

// startHandover is startClusterTopology's cluster — three NATS nodes,
// three replicas, two sidecars with a stable and a canary each — with the
// replicas' configuration and lease TTL of o.
func startHandover(t *testing.T, o handoverOptions) *clusterTopology {
	t.Helper()
	top := &clusterTopology{nodes: natstest.StartCluster(t, 3)}
	url := natstest.URLs(top.nodes)
	for i := range top.replicas {
		cfg := strings.Replace(testConfig, "nats:\n", fmt.Sprintf("cluster:\n  replica_id: r%d\n  lease_ttl: %s\nnats:\n  url: %s\n  replicas: 3\n", i+1, o.ttl, url), 1)
		if o.replica != nil {
			cfg = o.replica(cfg)
		}
		top.replicas[i] = startDaemon(t, cfg)
	}
	top.stream = top.replicas[0].stream
	for i := range top.sidecars {
		cfg := strings.Replace(testConfig, "nats:\n", fmt.Sprintf("mode: sidecar\nsidecar:\n  id: edge-%d\nnats:\n  url: %s\n  replicas: 3\n", i+1, url), 1)
		cfg = strings.Replace(cfg, "grpc_listen_address: 127.0.0.1:0", `grpc_listen_address: ""`, 1)
		top.sidecars[i] = startDaemon(t, cfg)
		top.stables[i] = newService(t, top.sidecars[i].otlp, "checkout", "v1", 0.01, uint64(10+i))
		top.canaries[i] = newService(t, top.sidecars[i].otlp, "checkout", "v2", o.errRate, uint64(20+i))
	}
	owner := handoverOwner(t, top, o.ttl)
	checkFor(t, 30*time.Second, func() error { // v1 is the stable version
		for _, s := range top.stables {
			s.serve(t, 100)
		}
		if n := metricValue(t, top.replicas[owner], `rollguard_detector_aggregates_total{outcome="merged"}`); n < 2 {
			return fmt.Errorf("%v aggregates merged by the owner", n)
		}
		return nil
	})
	return top
}

// handoverOwner is top.owner for a lease TTL of ttl.
func handoverOwner(t *testing.T, top *clusterTopology, ttl time.Duration) int {
	t.Helper()
	var idx int
	checkFor(t, 3*ttl+10*time.Second, func() error {
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

// handoverKill kills replica i as kill -9 would: its NATS connection drops
// first, so it can neither hand its lease over nor save anything.
func handoverKill(top *clusterTopology, i int) {
	top.replicas[i].nc.Close()
	top.replicas[i].stop()
	top.stopped[i] = true
}

// handoverCommands returns the commands in the stream, each once.
func handoverCommands(t *testing.T, top *clusterTopology) []*jetstream.RawStreamMsg {
	t.Helper()
	top.commandIDs(t) // each command once
	return streamMsgs(t, top.stream, "rollguard.cmd.")
}

// handoverResult publishes an actuator's result for the command.
func handoverResult(t *testing.T, top *clusterTopology, cmd, action, status string) {
	t.Helper()
	r := actions.ResultData{CommandID: cmd, Action: action, Service: "checkout", Status: status,
		Detail: "done between owners", Actuator: "flagd", At: time.Now().UTC()}
	ev, err := actions.NewEvent(cmd+"/result/flagd", actions.ResultType(action), "checkout", r.At, r)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(ev)
	m := actions.Message{Subject: actions.Subjects{Prefix: "rollguard"}.Result(action, "checkout"), ID: ev.ID, Data: b}
	if err := (actions.JetStreamPublisher{JS: top.replicas[0].js}).Publish(t.Context(), m); err != nil {
		t.Fatal(err)
	}
}

// handoverStates is each incident's state and command statuses, for messages.
func handoverStates(incs ...actions.Incident) []string {
	var out []string
	for _, inc := range incs {
		s := inc.State
		for _, c := range inc.Commands {
			s += " " + c.Action + ":" + c.Status
		}
		out = append(out, s)
	}
	return out
}

// TestHandoverBeforeFirstCheckpoint: the owner dies right after the
// canary's deployment opened, with no checkpoint tick since (the
// replicas evaluate every 25 s; the test evaluates by hand),
// and the new owner first sees the canary's traffic. The deployment was
// checkpointed as it opened, so the new owner resumes v1 -> v2 — never
// v2 -> v1 — and flags the bad canary with exactly one flag_kill. The
// twin, a healthy canary, resumes the same deployment and sends nothing.
func TestHandoverBeforeFirstCheckpoint(t *testing.T) {
	for _, tc := range []struct {
		name    string
		errRate float64
	}{{"bad canary", 0.06}, {"healthy canary", 0.01}} {
		t.Run(tc.name, func(t *testing.T) {
			top := startHandover(t, handoverOptions{errRate: tc.errRate, ttl: clusterLeaseTTL, replica: func(cfg string) string {
				return strings.Replace(cfg, "evaluation_interval: 100ms", "evaluation_interval: 25s", 1)
			}})
			first := handoverOwner(t, top, clusterLeaseTTL)
			checkFor(t, 10*time.Second, func() error { // the deployment opens on the owner
				top.canaries[0].serve(t, 20)
				if len(top.replicas[first].engine.Deployments()) == 0 {
					return fmt.Errorf("no deployment yet")
				}
				return nil
			})
			// Saved as it opened, not on the next tick. Without it the test
			// goes on, to show what the new owner makes of the traffic.
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				d, ok := top.replicas[first].cluster.checkpoints.Deployment(context.Background(), "checkout")
				if ok && d.Version == "v2" && d.PreviousVersion == "v1" {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("deployment not checkpointed within 10s of opening: %+v, %v", d, ok)
					break
				}
			}
			handoverKill(top, first)
			next := handoverOwner(t, top, clusterLeaseTTL)
			o := top.replicas[next]
			// The canary's traffic reaches the new owner first.
			merged := metricValue(t, o, `rollguard_detector_aggregates_total{outcome="merged"}`)
			checkFor(t, 20*time.Second, func() error {
				for _, c := range top.canaries {
					c.serve(t, 200)
				}
				if n := metricValue(t, o, `rollguard_detector_aggregates_total{outcome="merged"}`); n < merged+2 {
					return fmt.Errorf("%v canary aggregates merged by the new owner", n-merged)
				}
				return nil
			})
			if tc.errRate > 0.05 {
				checkFor(t, 90*time.Second, func() error {
					top.round(t, 500)
					o.engine.Evaluate()
					if len(top.commandIDs(t)) == 0 {
						return fmt.Errorf("no command yet")
					}
					return nil
				})
				ids := top.commandIDs(t)
				if len(ids) != 1 || !strings.HasSuffix(ids[0], "/flag_kill/new-checkout-flow") {
					t.Fatalf("commands %v, want one flag_kill", ids)
				}
			} else {
				for i := 0; i < 40; i++ {
					top.round(t, 500)
					o.engine.Evaluate()
				}
				checkFor(t, 10*time.Second, func() error {
					o.engine.Evaluate()
					if v := o.verdict("checkout"); v == nil || v.Signals[0].Candidate.Total < 20000 {
						return fmt.Errorf("new owner has not judged the canary's traffic: %+v", v)
					}
					return nil
				})
				if ids := top.commandIDs(t); len(ids) != 0 {
					t.Fatalf("healthy canary: commands %v", ids)
				}
			}
			deps := o.engine.Deployments()
			if len(deps) == 0 || deps[0].Version != "v2" || deps[0].PreviousVersion != "v1" {
				t.Fatalf("the new owner's deployments %+v, want v1 -> v2 resumed", deps)
			}
			for _, d := range deps {
				if d.Version == "v1" {
					t.Errorf("the new owner opened a reversed deployment %+v", d)
				}
			}
		})
	}
}

// TestHandoverBeforeAnyDeployment: the owner has seen only the stable
// version when it dies, and the new owner's first traffic is the canary's.
// The stable version was checkpointed, so the new owner knows v1 before it
// merges anything: the canary opens v1 -> v2, and the bad one gets its
// flag_kill. The twin, a healthy canary, opens the same deployment and
// sends nothing.
func TestHandoverBeforeAnyDeployment(t *testing.T) {
	for _, tc := range []struct {
		name    string
		errRate float64
	}{{"bad canary", 0.06}, {"healthy canary", 0.01}} {
		t.Run(tc.name, func(t *testing.T) {
			top := startHandover(t, handoverOptions{errRate: tc.errRate, ttl: clusterLeaseTTL})
			first := handoverOwner(t, top, clusterLeaseTTL)
			checkFor(t, 10*time.Second, func() error {
				if v, ok := top.replicas[first].cluster.checkpoints.Stable(context.Background(), "checkout"); !ok || v != "v1" {
					return fmt.Errorf("stable version checkpointed: %q, %v; want v1", v, ok)
				}
				return nil
			})
			handoverKill(top, first)
			next := handoverOwner(t, top, clusterLeaseTTL)
			o := top.replicas[next]
			// Known on adoption, before any traffic. Without it the test goes
			// on, to show what the new owner makes of the canary's traffic.
			for deadline := time.Now().Add(10 * time.Second); o.engine.StableVersions()["checkout"] != "v1"; time.Sleep(50 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Errorf("the new owner's stable version is %q, want v1", o.engine.StableVersions()["checkout"])
					break
				}
			}
			checkFor(t, 20*time.Second, func() error { // the canary's traffic first
				for _, c := range top.canaries {
					c.serve(t, 200)
				}
				if len(o.engine.Deployments()) == 0 {
					return fmt.Errorf("no deployment on the new owner yet")
				}
				return nil
			})
			if tc.errRate > 0.05 {
				top.untilCommand(t, 60*time.Second)
				if ids := top.commandIDs(t); len(ids) != 1 || !strings.HasSuffix(ids[0], "/flag_kill/new-checkout-flow") {
					t.Fatalf("commands %v, want one flag_kill", ids)
				}
			} else {
				for i := 0; i < 40; i++ {
					top.round(t, 500)
				}
				o.nextEvaluation(t, "checkout")
				if ids := top.commandIDs(t); len(ids) != 0 {
					t.Fatalf("healthy canary: commands %v", ids)
				}
			}
			deps := o.engine.Deployments()
			if len(deps) != 1 || deps[0].Version != "v2" || deps[0].PreviousVersion != "v1" {
				t.Fatalf("the new owner's deployments %+v, want v1 -> v2 only", deps)
			}
		})
	}
}

// handoverAckTimeout is the replicas' ack_timeout in the ack-deadline test.
const handoverAckTimeout = 20 * time.Second

// TestHandoverKeepsAckDeadline: nobody answers the flag kill; its owner
// dies halfway through ack_timeout, and the new owner sends the rollback
// about ack_timeout after the flag kill was published — not ack_timeout
// after it took over (which would be at least 31 s here). The twin: the
// actuator's ok came before the owner died, and no rollback follows.
func TestHandoverKeepsAckDeadline(t *testing.T) {
	for _, answered := range []bool{false, true} {
		t.Run(map[bool]string{false: "no result", true: "ok before the kill"}[answered], func(t *testing.T) {
			top := startHandover(t, handoverOptions{errRate: 0.06, ttl: clusterLeaseTTL, replica: func(cfg string) string {
				return cfg + "playbook:\n  ack_timeout: " + handoverAckTimeout.String() + "\n"
			}})
			top.untilCommand(t, 60*time.Second)
			kill := handoverCommands(t, top)[0]
			id := eventID(kill.Data)
			first := handoverOwner(t, top, clusterLeaseTTL)
			if answered {
				handoverResult(t, top, id, actions.ActionFlagKill, actions.ResultOK)
				checkFor(t, 10*time.Second, func() error {
					if inc := top.replicas[first].playbook.Incidents(); len(inc) != 1 || inc[0].State != actions.StateVerifying {
						return fmt.Errorf("owner's incidents %v, want one verifying", handoverStates(inc...))
					}
					return nil
				})
			}
			checkFor(t, handoverAckTimeout, func() error { // halfway through ack_timeout
				if since := time.Since(kill.Time); since < handoverAckTimeout/2 {
					return fmt.Errorf("%s since the flag kill", since)
				}
				return nil
			})
			handoverKill(top, first)
			next := handoverOwner(t, top, clusterLeaseTTL)
			if answered {
				poll.Holds(t, max(time.Until(kill.Time.Add(handoverAckTimeout+8*time.Second)), 2*time.Second), func() error {
					if cmds := handoverCommands(t, top); len(cmds) != 1 {
						return fmt.Errorf("%d commands after the actuator's ok, want the flag kill only", len(cmds))
					}
					return nil
				})
				return
			}
			var rollback *jetstream.RawStreamMsg
			checkFor(t, 3*handoverAckTimeout, func() error {
				cmds := handoverCommands(t, top)
				if len(cmds) < 2 {
					return fmt.Errorf("no rollback yet")
				}
				rollback = cmds[1]
				return nil
			})
			after := rollback.Time.Sub(kill.Time)
			t.Logf("r%d took over from r%d; rollback %s after the flag kill (ack_timeout %s)", next+1, first+1, after.Round(time.Millisecond), handoverAckTimeout)
			if !strings.HasSuffix(eventID(rollback.Data), "/rollback/v1") {
				t.Fatalf("second command %s, want the rollback to v1", eventID(rollback.Data))
			}
			if after < handoverAckTimeout || after > handoverAckTimeout+5*time.Second {
				t.Fatalf("rollback %s after the flag kill, want within 5s after ack_timeout (%s)", after, handoverAckTimeout)
			}
		})
	}
}

// handoverTTL is the lease TTL of the result test: long enough for the
// survivors to restart while the dead owner's lease still holds.
const handoverTTL = 10 * time.Second

// TestHandoverResultBetweenOwners: the owner dies right after its flag
// kill; the actuator's ok is stored while no replica owns the guard, and
// the two survivors' results consumers take it before both restart (as in
// a rolling restart), so none holds it in memory. The one that adopts the
// guard reads it from the stream: the incident verifies, and no rollback
// is sent, past the ack deadline too. The twin: a failed result stored
// between owners brings the rollback.
func TestHandoverResultBetweenOwners(t *testing.T) {
	for _, status := range []string{actions.ResultOK, actions.ResultFailed} {
		t.Run(status, func(t *testing.T) {
			top := startHandover(t, handoverOptions{errRate: 0.06, ttl: handoverTTL, replica: func(cfg string) string {
				return cfg + "playbook:\n  ack_timeout: 15s\n"
			}})
			checkFor(t, 60*time.Second, func() error {
				top.round(t, 500)
				if len(top.commandIDs(t)) == 0 {
					return fmt.Errorf("no command yet")
				}
				return nil
			})
			first := handoverOwner(t, top, handoverTTL)
			cmds := handoverCommands(t, top)
			kill := eventID(cmds[0].Data)
			checkFor(t, 10*time.Second, func() error { // the owner saved its incident with the command published
				inc := top.replicas[first].playbook.Incidents()
				if len(inc) != 1 || len(inc[0].Commands) != 1 || inc[0].Commands[0].Status != actions.CommandPublished {
					return fmt.Errorf("owner's incidents %v, want one with its flag kill published", handoverStates(inc...))
				}
				return nil
			})
			handoverKill(top, first)
			handoverResult(t, top, kill, actions.ActionFlagKill, status)
			ctx := context.Background()
			for i := range top.replicas {
				if i == first {
					continue
				}
				name := "rollguard-playbook-r" + fmt.Sprint(i+1)
				checkFor(t, 10*time.Second, func() error {
					c, err := top.stream.Consumer(ctx, name)
					if err != nil {
						return err
					}
					info, err := c.Info(ctx)
					if err != nil {
						return err
					}
					if info.NumPending != 0 || info.NumAckPending != 0 {
						return fmt.Errorf("%s: %d pending, %d unacknowledged", name, info.NumPending, info.NumAckPending)
					}
					return nil
				})
				top.replicas[i] = restartDaemon(t, top.replicas[i])
			}
			top.stream = top.replicas[first].stream // a restart closed the other test clients
			next := handoverOwner(t, top, handoverTTL)
			o := top.replicas[next]
			if status == actions.ResultFailed {
				checkFor(t, 30*time.Second, func() error {
					if ids := top.commandIDs(t); len(ids) != 2 || !strings.HasSuffix(ids[1], "/rollback/v1") {
						return fmt.Errorf("commands %v, want the flag kill and the rollback", ids)
					}
					return nil
				})
				return
			}
			checkFor(t, 20*time.Second, func() error {
				inc := o.playbook.Incidents()
				if len(inc) != 1 {
					return fmt.Errorf("new owner holds %d incidents, want one", len(inc))
				}
				if inc[0].State != actions.StateVerifying {
					return fmt.Errorf("new owner's incident is %s (%s), want verifying", inc[0].State, inc[0].Reason)
				}
				return nil
			})
			poll.Holds(t, max(time.Until(cmds[0].Time.Add(15*time.Second+5*time.Second)), 2*time.Second), func() error {
				if ids := top.commandIDs(t); len(ids) != 1 {
					return fmt.Errorf("commands %v after the actuator's ok, want the flag kill only", ids)
				}
				return nil
			})
			if c := o.playbook.Incidents()[0].Commands[0]; c.Status != actions.CommandOK || c.Result == nil || c.Result.Actuator != "flagd" {
				t.Fatalf("flag kill %+v, want flagd's ok", c)
			}
		})
	}
}
