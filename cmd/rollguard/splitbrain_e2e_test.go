//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/cluster"
	"github.com/rollguard/rollguard/cluster/agg"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/internal/natstest"
	"github.com/rollguard/rollguard/internal/poll"
)

// The split-brain tests run three central replicas as child processes
// (procs_test.go) on an in-process three-node NATS cluster, with one
// in-process sidecar that the services report to through the OpenTelemetry
// SDK. The owner of the guard is paused with SIGSTOP for three lease TTLs
// at one phase of an incident, another replica takes the guard over, and
// the paused one is continued: a replica that was deposed while it slept
// must not act on what it knew before — no second publish of anything, on
// the wire or in the stream, and no write over the new owner's record.
const (
	splitBrainTTL = 2 * time.Second
	splitBrainAck = 5 * time.Second
	// pauseFor is how long an owner is stopped: its lease has expired and
	// another replica has taken the guard long before it wakes.
	pauseFor = 3 * splitBrainTTL
)

// splitBrainReplica is a replica's configuration. No actuator runs in
// these tests, so the flag kill goes unanswered: ack_timeout after it the
// playbook rolls back, and ack_timeout after that hands the incident over
// to people (escalated), where it rests.
const splitBrainReplica = `
global:
  evaluation_interval: 200ms
  no_data_timeout: 30s
cluster:
  replica_id: %ID%
  lease_ttl: %TTL%
nats:
  url: %NATS%
  replicas: 3
otlp:
  http_listen_address: 127.0.0.1:0
  grpc_listen_address: ""
playbook:
  containment_timeout: 5s
  recovery_timeout: 5s
  healthy_hold: 2s
  ack_timeout: %ACK%
  status_interval: 1m
  close_after: 1h
  signing:
    seed_file: %SEED%
guards:
  - name: checkout
    service: checkout
    alpha: 0.001
    flags: [new-checkout-flow]
    signals:
      - name: errors
`

// splitBrain is the topology: NATS nodes, three replica processes, one
// sidecar with a stable and a canary service, and the test's own views of
// the wire (a core subscriber), the stream and the KV buckets.
type splitBrain struct {
	t              *testing.T
	nodes          []*server.Server
	replicas       [3]*replicaProc
	sidecar        *testDaemon
	stable, canary *service
	wire           *wireLog
	stream         jetstream.Stream
	leases, incs   jetstream.KeyValue
	checkpoints    *cluster.Checkpoints
}

func startSplitBrain(t *testing.T, canaryErrRate float64) *splitBrain {
	t.Helper()
	s := &splitBrain{t: t, nodes: natstest.StartCluster(t, 3)}
	url := natstest.URLs(s.nodes)
	// The subscriber is there before anything can be published.
	s.wire = recordWire(t, s.nodes)
	// Replicas of a cluster share the signing seed, which also keys the
	// Nats-Msg-Id: a message two replicas publish under one id is one
	// message to JetStream, and only the wire shows there were two.
	seed := writeSeed(t)
	for i := range s.replicas {
		id := fmt.Sprintf("r%d", i+1)
		cfg := strings.NewReplacer("%ID%", id, "%TTL%", splitBrainTTL.String(), "%NATS%", url,
			"%ACK%", splitBrainAck.String(), "%SEED%", seed).Replace(splitBrainReplica)
		// One after another: a parallel start of a fresh cluster is
		// another test's subject.
		s.replicas[i] = startProc(t, id, cfg)
	}
	cfg := strings.Replace(testConfig, "nats:\n", "mode: sidecar\nsidecar:\n  id: edge-1\nnats:\n  url: "+url+"\n  replicas: 3\n", 1)
	cfg = strings.Replace(cfg, "grpc_listen_address: 127.0.0.1:0", `grpc_listen_address: ""`, 1)
	s.sidecar = startDaemon(t, cfg)
	s.stable = newService(t, s.sidecar.otlp, "checkout", "v1", 0.01, 31)
	s.canary = newService(t, s.sidecar.otlp, "checkout", "v2", canaryErrRate, 32)

	js := natstest.JetStream(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	if s.stream, err = js.Stream(ctx, "ROLLGUARD"); err != nil {
		t.Fatal(err)
	}
	if s.leases, err = js.KeyValue(ctx, "ROLLGUARD_LEASES"); err != nil {
		t.Fatal(err)
	}
	if s.incs, err = js.KeyValue(ctx, "ROLLGUARD_INCIDENTS"); err != nil {
		t.Fatal(err)
	}
	if s.checkpoints, err = cluster.NewCheckpoints(ctx, js, cluster.CheckpointOptions{Bucket: "ROLLGUARD_DEPLOYMENTS", Replicas: 3}); err != nil {
		t.Fatal(err)
	}

	// v1 is seen first, by the owner: it is the stable version.
	owner := s.waitOwner(-1)
	checkFor(t, 30*time.Second, func() error {
		s.stable.serve(t, 100)
		n, err := s.replicas[owner].metric(`rollguard_detector_aggregates_total{outcome="merged"}`)
		if err != nil || n < 2 {
			return fmt.Errorf("%v aggregates merged by the owner r%d (%v)", n, owner+1, err)
		}
		if deps, err := s.replicas[owner].deployments(); err != nil || len(deps) != 0 {
			return fmt.Errorf("deployments before the canary: %+v (%v)", deps, err)
		}
		return nil
	})
	return s
}

// writeSeed writes an nkey user seed for the replicas to sign with.
func writeSeed(t *testing.T) string {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "signing.nk")
	if err := os.WriteFile(file, append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// round has the stable and the canary serve n requests each.
func (s *splitBrain) round(n int) {
	s.stable.serve(s.t, n)
	s.canary.serve(s.t, n)
}

// holder is the index of the replica whose id is under the guard's lease
// key, or -1 when nobody holds it.
func (s *splitBrain) holder() int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	e, err := s.leases.Get(ctx, "checkout")
	if err != nil {
		return -1
	}
	for i, r := range s.replicas {
		if string(e.Value()) == r.name {
			return i
		}
	}
	return -1
}

// waitOwner waits until a replica other than not holds the guard.
func (s *splitBrain) waitOwner(not int) int {
	s.t.Helper()
	var idx int
	checkFor(s.t, 3*splitBrainTTL+10*time.Second, func() error {
		if idx = s.holder(); idx < 0 || idx == not {
			return fmt.Errorf("lease held by replica %d", idx)
		}
		return nil
	})
	return idx
}

// pause stops replica i and serves traffic for pauseFor and until done
// holds (what the other replicas must have done meanwhile); then it
// continues the replica.
func (s *splitBrain) pause(i int, done func() error) {
	s.t.Helper()
	s.replicas[i].pause()
	s.replicas[i].pausedNow()
	s.hold(i, done)
}

// hold serves traffic while replica i is stopped, for pauseFor since it
// was stopped and until done holds, and continues it.
func (s *splitBrain) hold(i int, done func() error) {
	s.t.Helper()
	start := time.Now()
	checkFor(s.t, pauseFor+60*time.Second, func() error {
		s.round(500)
		if d := time.Since(start); d < pauseFor {
			return fmt.Errorf("paused for %s of %s", d.Round(time.Millisecond), pauseFor)
		}
		if h := s.holder(); h < 0 || h == i {
			return fmt.Errorf("no other replica took the guard while r%d was paused (lease: %d)", i+1, h)
		}
		return done()
	})
	s.t.Logf("r%d paused for %s; r%d holds the guard", i+1, time.Since(start).Round(time.Millisecond), s.holder()+1)
	s.replicas[i].resume()
}

// storedIncidents is every incident in the KV bucket.
func (s *splitBrain) storedIncidents() ([]actions.Incident, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lister, err := s.incs.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	var out []actions.Incident
	for _, k := range keys {
		e, err := s.incs.Get(ctx, k)
		if err != nil {
			return nil, fmt.Errorf("incident %s: %w", k, err)
		}
		var inc actions.Incident
		if err := json.Unmarshal(e.Value(), &inc); err != nil {
			return nil, fmt.Errorf("incident %s: %w", k, err)
		}
		out = append(out, inc)
	}
	return out, nil
}

// escalated serves traffic after the deposed replica was continued until
// the incident has run its course in the KV bucket — flag kill and
// rollback both unanswered, handed over to people — and the deposed
// replica answers again and has let the guard go. Then it watches the
// wire for two TTLs more: nothing else is published.
func (s *splitBrain) escalated(deposed int) actions.Incident {
	s.t.Helper()
	var inc actions.Incident
	checkFor(s.t, 90*time.Second, func() error {
		s.round(500)
		if err := s.wire.once(); err != nil {
			s.t.Fatal(err) // no need to wait for the rest
		}
		incs, err := s.storedIncidents()
		if err != nil || len(incs) != 1 {
			return fmt.Errorf("incidents in KV: %d (%v)", len(incs), err)
		}
		inc = incs[0]
		if inc.State != actions.StateEscalated || len(inc.Commands) != 2 {
			return fmt.Errorf("incident in KV %s with %d commands: %s", inc.State, len(inc.Commands), inc.Reason)
		}
		mine, err := s.replicas[deposed].incidents()
		if err != nil {
			return err
		}
		if len(mine) != 0 {
			return fmt.Errorf("the deposed r%d still lists %d incidents", deposed+1, len(mine))
		}
		return nil
	})
	n := s.wire.len()
	poll.Holds(s.t, 2*splitBrainTTL, func() error {
		if err := s.wire.once(); err != nil {
			return err
		}
		if m := s.wire.len(); m != n {
			return fmt.Errorf("%d more messages on the wire after the incident rested: %v", m-n, s.wire.ids("rollguard.")[n:])
		}
		return nil
	})
	return inc
}

// agree checks that the wire, the stream, the KV record and the owner's
// API tell one story of the incident: the flag kill and the rollback,
// each published once and stored once, the stored message the one the
// record describes (sent at the same instant), every incident event and
// status update the record counts and no other, the last ones in the
// record's state, and the owner showing what KV holds.
func (s *splitBrain) agree(inc actions.Incident) {
	t := s.t
	t.Helper()
	if err := s.wire.once(); err != nil {
		t.Fatal(err)
	}
	ids := exactlyOnce(t, s.stream)
	want := []string{
		actions.CommandID(inc.Deployment.ID, actions.ActionFlagKill, "new-checkout-flow"),
		actions.CommandID(inc.Deployment.ID, actions.ActionRollback, "v1"),
	}
	if strings.Join(ids, " ") != strings.Join(want, " ") {
		t.Fatalf("commands in the stream %v, want %v", ids, want)
	}
	if got := s.wire.ids("rollguard.cmd."); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("commands on the wire %v, want %v", got, want)
	}
	stored := map[string]*jetstream.RawStreamMsg{}
	for _, m := range streamMsgs(t, s.stream, "rollguard.") {
		stored[eventID(m.Data)] = m
	}
	for _, w := range s.wire.all("rollguard.") {
		if m, ok := stored[w.id]; !ok || !bytes.Equal(m.Data, w.data) {
			t.Errorf("%s on the wire is not the message stored under its id", w.id)
		}
	}
	for _, c := range inc.Commands {
		m, ok := stored[c.ID]
		if !ok {
			t.Errorf("command %s (%s) of the KV record is not in the stream", c.ID, c.Status)
			continue
		}
		if c.Status != actions.CommandTimedOut {
			t.Errorf("command %s is %s in KV, want timed_out", c.ID, c.Status)
		}
		var ev actions.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if c.SentAt == nil || !c.SentAt.Equal(ev.Time) {
			t.Errorf("command %s: KV says sent at %v, the stored message was made at %v: another replica's", c.ID, c.SentAt, ev.Time)
		}
	}
	for _, kind := range []struct {
		sub string
		seq int
	}{
		{"/event/", inc.EventSeq},
		{"/status/", inc.StatusSeq},
	} {
		var got []string
		lastSeq, lastState := 0, ""
		for id, m := range stored {
			if !strings.Contains(id, kind.sub) {
				continue
			}
			got = append(got, id)
			var ev actions.Event
			var d struct {
				Seq   int    `json:"seq"`
				State string `json:"state"`
			}
			if json.Unmarshal(m.Data, &ev) != nil || json.Unmarshal(ev.Data, &d) != nil {
				t.Fatalf("%s does not decode", id)
			}
			if d.Seq > lastSeq {
				lastSeq, lastState = d.Seq, d.State
			}
		}
		sort.Strings(got)
		var exp []string
		for i := 1; i <= kind.seq; i++ {
			exp = append(exp, fmt.Sprintf("%s%s%d", inc.ID, kind.sub, i))
		}
		sort.Strings(exp)
		if strings.Join(got, " ") != strings.Join(exp, " ") {
			t.Errorf("%s messages in the stream %v, the KV record counts %d", strings.Trim(kind.sub, "/"), got, kind.seq)
		}
		if lastState != inc.State {
			t.Errorf("the last %s in the stream says %q, KV %q", strings.Trim(kind.sub, "/"), lastState, inc.State)
		}
	}
	owner := s.holder()
	if owner < 0 {
		t.Fatal("nobody holds the guard")
	}
	checkFor(t, 10*time.Second, func() error {
		incs, err := s.replicas[owner].incidents()
		if err != nil || len(incs) != 1 {
			return fmt.Errorf("the owner r%d lists %d incidents (%v)", owner+1, len(incs), err)
		}
		got := incs[0]
		if got.ID != inc.ID || got.State != inc.State || len(got.Commands) != len(inc.Commands) {
			return fmt.Errorf("the owner r%d shows %s %s with %d commands, KV %s %s with %d", owner+1,
				got.ID, got.State, len(got.Commands), inc.ID, inc.State, len(inc.Commands))
		}
		for i, c := range got.Commands {
			if k := inc.Commands[i]; c.ID != k.ID || c.Status != k.Status {
				return fmt.Errorf("the owner r%d shows command %s %s, KV %s %s", owner+1, c.ID, c.Status, k.ID, k.Status)
			}
		}
		return nil
	})
}

// TestSplitBrainPause: the owner of the guard is paused (SIGSTOP) for three
// lease TTLs at each phase of an incident — before detection, as its flag
// kill is published, once the flag kill is saved, and across the flag
// kill's ack deadline — while another replica takes the guard over;
// continued, it must not act again. Each command is published on the wire
// exactly once (counted by a core subscriber, which sees what JetStream's
// deduplication hides), the stream holds each once, and the stream, the
// KV record and the owner agree.
func TestSplitBrainPause(t *testing.T) {
	// Before detection: the deployment is open and checkpointed on the
	// owner, which has seen a hundred canary requests, too few to prove
	// anything; it is stopped as the first big batch of the bad canary
	// is shipped to it. While it sleeps, the next owner resumes the
	// deployment, detects the bad canary and kills the flag; the sleeper
	// wakes with that batch and the rest of its pause's aggregates
	// waiting for it.
	t.Run("before detection", func(t *testing.T) {
		s := startSplitBrain(t, 0.06)
		first := s.waitOwner(-1)
		s.canary.serve(t, 100)
		checkFor(t, 20*time.Second, func() error {
			deps, err := s.replicas[first].deployments()
			if err != nil || len(deps) == 0 || deps[0].Version != "v2" {
				return fmt.Errorf("r%d's deployments %+v (%v)", first+1, deps, err)
			}
			if cp, ok := s.checkpoints.Deployment(context.Background(), "checkout"); !ok || cp.ID != deps[0].ID {
				return fmt.Errorf("deployment %s not checkpointed yet (%+v)", deps[0].ID, cp)
			}
			return nil
		})
		// The owner is stopped as the sidecar's aggregate with a batch of
		// the bad canary goes out to it: within a millisecond, before it
		// can evaluate that batch.
		s.wire.onAggregate(func(aggs []detector.Aggregate) bool {
			for _, a := range aggs {
				if a.Version == "v2" && a.Total >= 500 {
					return true
				}
			}
			return false
		}, s.replicas[first].pause)
		s.stable.serve(t, 1500)
		s.canary.serve(t, 1500)
		s.replicas[first].pausedNow()
		if ids := s.wire.ids("rollguard."); len(ids) != 0 {
			t.Fatalf("published before the pause %v: the phase was missed", ids)
		}
		s.hold(first, func() error {
			if len(s.wire.ids("rollguard.cmd.")) == 0 {
				return errors.New("the next owner has not killed the flag yet")
			}
			return nil
		})
		s.agree(s.escalated(first))
	})

	// As the flag kill is published: the owner is stopped from the
	// subscriber's callback, within a millisecond of its flag kill
	// reaching the wire — before it has saved the incident, most times,
	// so the next owner finds no incident in KV and must learn from the
	// stream that the flag kill is out (actions/onwire.go). Its ack
	// deadline passes while it sleeps. Before the new owner read the
	// stream on adoption it detected again and published a second flag
	// kill and incident event under the same ids (4 of 4 runs): JetStream
	// kept the first, the wire carried both.
	t.Run("as the flag kill is published", func(t *testing.T) {
		s := startSplitBrain(t, 0.06)
		first := s.waitOwner(-1)
		s.wire.onFirst("rollguard.cmd.", s.replicas[first].pause)
		checkFor(t, 60*time.Second, func() error {
			s.round(500)
			if len(s.wire.ids("rollguard.cmd.")) == 0 {
				return errors.New("no flag kill yet")
			}
			return nil
		})
		s.replicas[first].pausedNow()
		if h := s.holder(); h != first {
			t.Fatalf("the flag kill came after r%d lost the guard to r%d", first+1, h+1)
		}
		s.hold(first, func() error { return nil })
		s.agree(s.escalated(first))
	})

	// After the flag kill is saved: the owner is stopped once KV holds the
	// incident with its flag kill published. The next owner continues
	// that record; the sleeper wakes with its ack deadline past.
	t.Run("after the flag kill is saved", func(t *testing.T) {
		s := startSplitBrain(t, 0.06)
		first := s.waitOwner(-1)
		checkFor(t, 60*time.Second, func() error {
			s.round(500)
			incs, err := s.storedIncidents()
			if err != nil || len(incs) != 1 || len(incs[0].Commands) != 1 || incs[0].Commands[0].Status != actions.CommandPublished {
				return fmt.Errorf("no incident with its flag kill published in KV yet (%d, %v)", len(incs), err)
			}
			return nil
		})
		s.replicas[first].pause()
		s.replicas[first].pausedNow()
		if ids := s.wire.ids("rollguard.cmd."); len(ids) != 1 {
			t.Fatalf("commands %v before the pause, want the flag kill alone: the phase was missed", ids)
		}
		if h := s.holder(); h != first {
			t.Fatalf("r%d lost the guard to r%d before the pause", first+1, h+1)
		}
		s.hold(first, func() error { return nil })
		s.agree(s.escalated(first))
	})

	// Across the ack deadline: the owner killed the flag, nobody answers,
	// and a second before the rollback is due it is stopped; it wakes
	// with the deadline long past.
	t.Run("across the ack deadline", func(t *testing.T) {
		s := startSplitBrain(t, 0.06)
		first := s.waitOwner(-1)
		var killedAt time.Time
		checkFor(t, 60*time.Second, func() error {
			s.round(500)
			if ms := s.wire.all("rollguard.cmd."); len(ms) > 0 {
				killedAt = ms[0].at
				return nil
			}
			return errors.New("no flag kill yet")
		})
		checkFor(t, splitBrainAck, func() error {
			s.round(100)
			if d := time.Since(killedAt); d < splitBrainAck-time.Second {
				return fmt.Errorf("%s since the flag kill", d)
			}
			return nil
		})
		s.replicas[first].pause()
		s.replicas[first].pausedNow()
		if ids := s.wire.ids("rollguard.cmd."); len(ids) != 1 {
			t.Fatalf("commands %v before the pause, want the flag kill alone: the phase was missed", ids)
		}
		if h := s.holder(); h != first {
			t.Fatalf("r%d lost the guard to r%d before the pause", first+1, h+1)
		}
		s.hold(first, func() error { return nil })
		s.agree(s.escalated(first))
	})
}

// TestSplitBrainPauseHealthy is the twin: a healthy canary, its owner
// paused for three TTLs once the deployment is open and continued; the
// next owner goes on evaluating it, and nothing at all is published.
func TestSplitBrainPauseHealthy(t *testing.T) {
	s := startSplitBrain(t, 0.01)
	first := s.waitOwner(-1)
	s.canary.serve(t, 100)
	checkFor(t, 20*time.Second, func() error {
		if cp, ok := s.checkpoints.Deployment(context.Background(), "checkout"); !ok || cp.Version != "v2" {
			return fmt.Errorf("deployment not checkpointed yet (%+v)", cp)
		}
		return nil
	})
	s.pause(first, func() error { return nil })
	// The canary's traffic since the resume, and a good deal of it, is
	// evaluated by the owner.
	var owner int
	checkFor(t, 60*time.Second, func() error {
		s.round(500)
		if owner = s.holder(); owner < 0 {
			return errors.New("nobody holds the guard")
		}
		gs, err := s.replicas[owner].guards()
		if err != nil || len(gs) != 1 || gs[0].Verdict == nil || len(gs[0].Verdict.Signals) == 0 {
			return fmt.Errorf("owner r%d: no verdict yet (%v)", owner+1, err)
		}
		if n := gs[0].Verdict.Signals[0].Candidate.Total; n < 15000 {
			return fmt.Errorf("owner r%d evaluated %v canary requests", owner+1, n)
		}
		return nil
	})
	if ids := s.wire.ids("rollguard."); len(ids) != 0 {
		t.Fatalf("healthy canary: published %v", ids)
	}
	if ids := exactlyOnce(t, s.stream); len(ids) != 0 {
		t.Fatalf("healthy canary: commands %v in the stream", ids)
	}
	if incs, err := s.storedIncidents(); err != nil || len(incs) != 0 {
		t.Fatalf("healthy canary: %d incidents in KV (%v)", len(incs), err)
	}
}

// wireMsg is one message the core subscriber saw.
type wireMsg struct {
	subject, id string
	data        []byte
	at          time.Time // when it arrived here
}

// wireLog is a core NATS subscriber to everything rollguard publishes
// for people and actuators — commands, incident events, status updates —
// keeping every message in arrival order. Unlike the stream, it sees a
// message published twice under one id twice.
type wireLog struct {
	t        *testing.T
	mu       sync.Mutex
	msgs     []wireMsg
	hooks    []wireHook
	aggHooks []aggHook
}

// aggHook is called for the first aggregate message match accepts.
type aggHook struct {
	match func([]detector.Aggregate) bool
	f     func()
}

type wireHook struct {
	prefix string
	f      func()
}

func recordWire(t *testing.T, nodes []*server.Server) *wireLog {
	t.Helper()
	w := &wireLog{t: t}
	nc, err := nats.Connect(nodes[0].ClientURL(), nats.MaxReconnects(-1),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			t.Errorf("the wire subscriber: %v", err) // a slow consumer would lose messages
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	for _, subj := range []string{"rollguard.cmd.>", "rollguard.incident.>", "rollguard.status.>"} {
		sub, err := nc.Subscribe(subj, w.add)
		if err != nil {
			t.Fatal(err)
		}
		_ = sub.SetPendingLimits(-1, -1)
	}
	// The aggregates the sidecar ships to the owner are not kept, only
	// watched for onAggregate.
	if _, err := nc.Subscribe("rollguard.agg.>", w.aggregate); err != nil {
		t.Fatal(err)
	}
	// The subscriptions reach the other nodes over the routes in order: once
	// a later one answers from every node, these do too.
	if _, err := nc.Subscribe("splitbrain.probe", func(m *nats.Msg) { _ = m.Respond(nil) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, ns := range nodes[1:] {
		pc, err := nats.Connect(ns.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		checkFor(t, 10*time.Second, func() error {
			_, err := pc.Request("splitbrain.probe", nil, 200*time.Millisecond)
			return err
		})
		pc.Close()
	}
	return w
}

func (w *wireLog) add(m *nats.Msg) {
	w.mu.Lock()
	w.msgs = append(w.msgs, wireMsg{subject: m.Subject, id: eventID(m.Data), data: m.Data, at: time.Now()})
	var run []func()
	for i := 0; i < len(w.hooks); {
		if strings.HasPrefix(m.Subject, w.hooks[i].prefix) {
			run = append(run, w.hooks[i].f)
			w.hooks = append(w.hooks[:i:i], w.hooks[i+1:]...)
			continue
		}
		i++
	}
	w.mu.Unlock()
	for _, f := range run {
		f()
	}
}

func (w *wireLog) aggregate(m *nats.Msg) {
	w.mu.Lock()
	hooks := w.aggHooks
	w.mu.Unlock()
	if len(hooks) == 0 {
		return
	}
	_, _, aggs, err := agg.Decode(m.Data)
	if err != nil {
		w.t.Errorf("an aggregate that does not decode on %s: %v", m.Subject, err)
		return
	}
	var run []func()
	w.mu.Lock()
	for i := 0; i < len(w.aggHooks); {
		if w.aggHooks[i].match(aggs) {
			run = append(run, w.aggHooks[i].f)
			w.aggHooks = append(w.aggHooks[:i:i], w.aggHooks[i+1:]...)
			continue
		}
		i++
	}
	w.mu.Unlock()
	for _, f := range run {
		f()
	}
}

// onAggregate calls f, in the subscriber's callback, for the first
// aggregate message (rollguard.agg.>) whose aggregates match accepts.
func (w *wireLog) onAggregate(match func([]detector.Aggregate) bool, f func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.aggHooks = append(w.aggHooks, aggHook{match, f})
}

// onFirst calls f, in the subscriber's callback, for the first message
// under the subject prefix.
func (w *wireLog) onFirst(prefix string, f func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.hooks = append(w.hooks, wireHook{prefix, f})
}

func (w *wireLog) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.msgs)
}

// all is the messages under the subject prefix, in arrival order.
func (w *wireLog) all(prefix string) []wireMsg {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []wireMsg
	for _, m := range w.msgs {
		if strings.HasPrefix(m.subject, prefix) {
			out = append(out, m)
		}
	}
	return out
}

// ids is the event ids under the subject prefix, in arrival order.
func (w *wireLog) ids(prefix string) []string {
	var out []string
	for _, m := range w.all(prefix) {
		out = append(out, m.id)
	}
	return out
}

// once fails when an event id was published more than once, saying how
// far apart and whether the copies differ (a second author) or not (a
// resend of the same bytes).
func (w *wireLog) once() error {
	first := map[string]wireMsg{}
	var errs []error
	for _, m := range w.all("rollguard.") {
		f, ok := first[m.id]
		if !ok {
			first[m.id] = m
			continue
		}
		how := "the same bytes again"
		if !bytes.Equal(f.data, m.data) {
			how = "a different message"
		}
		errs = append(errs, fmt.Errorf("%s published again on the wire %s after the first: %s",
			m.id, m.at.Sub(f.at).Round(time.Millisecond), how))
	}
	return errors.Join(errs...)
}
