package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/detector"
)

// announceTo posts an announcement of checkout v1 -> v2 with the flag
// announced-flag (not the guard's fallback, new-checkout-flow) to replica
// i, and returns the deployment it answers with.
func (top *clusterTopology) announceTo(t *testing.T, i int) detector.Deployment {
	t.Helper()
	code, b := top.replicas[i].post("/api/v1/deployments", `{"service":"checkout","version":"v2","previous_version":"v1","flags":["announced-flag"]}`)
	var dep detector.Deployment
	if code != 201 || json.Unmarshal(b, &dep) != nil {
		t.Fatalf("announcement to r%d: %d %s", i+1, code, b)
	}
	return dep
}

// ownerHas checks that the owner's deployment is dep, with the announced
// flag, and that no other replica opened one.
func (top *clusterTopology) ownerHas(t *testing.T, owner int, dep detector.Deployment) {
	t.Helper()
	for i, r := range top.replicas {
		deps := r.engine.Deployments()
		switch {
		case i == owner && (len(deps) != 1 || deps[0].ID != dep.ID || strings.Join(deps[0].Flags, ",") != "announced-flag" || deps[0].Source != detector.SourceAPI):
			t.Fatalf("the owner r%d has %+v, want the announced %s with announced-flag", i+1, deps, dep.ID)
		case i != owner && len(deps) != 0:
			t.Fatalf("r%d, not the owner, opened %+v", i+1, deps)
		}
	}
}

// TestClusterAnnounceToNonOwner: an announcement posted to a replica that
// does not own the guard (as a Kubernetes Service may route it) reaches
// the owner: the answer is the owner's deployment, and the bad canary's
// flag_kill targets the announced flag, not the guard's fallback.
func TestClusterAnnounceToNonOwner(t *testing.T) {
	top := startClusterTopology(t, 0.06)
	owner := top.owner(t)
	other := (owner + 1) % len(top.replicas)
	dep := top.announceTo(t, other)
	top.ownerHas(t, owner, dep)
	top.untilCommand(t, 60*time.Second)
	ids := top.commandIDs(t)
	if want := dep.ID + "/flag_kill/announced-flag"; len(ids) != 1 || ids[0] != want {
		t.Fatalf("commands %v, want %s", ids, want)
	}
}

// TestClusterAnnounceToOwner is the twin: an announcement posted to the
// owner is applied as before, and a healthy canary gets no command.
func TestClusterAnnounceToOwner(t *testing.T) {
	top := startClusterTopology(t, 0.01)
	owner := top.owner(t)
	dep := top.announceTo(t, owner)
	top.ownerHas(t, owner, dep)
	for i := 0; i < 60; i++ {
		top.round(t, 500)
	}
	o := top.replicas[owner]
	o.nextEvaluation(t, "checkout")
	checkFor(t, 10*time.Second, func() error {
		if v := o.verdict("checkout"); v == nil || v.Deployment.ID != dep.ID || v.Signals[0].Candidate.Total < 20000 {
			return fmt.Errorf("the owner has not evaluated the announced deployment on the canary's traffic: %+v", v)
		}
		return nil
	})
	if ids := top.commandIDs(t); len(ids) != 0 {
		t.Fatalf("healthy canary: commands %v", ids)
	}
}

// TestClusterAnnouncementSurvivesHandover: the owner dies right after it
// answered an announcement posted to another replica; the replica that
// takes the guard over resumes the announced deployment (an answer means
// the owner checkpointed it), and the bad canary's flag_kill targets the
// announced flag.
func TestClusterAnnouncementSurvivesHandover(t *testing.T) {
	top := startClusterTopology(t, 0.06)
	first := top.owner(t)
	dep := top.announceTo(t, (first+1)%len(top.replicas))
	// Read at once, not polled: the answer came after the checkpoint.
	if cp, ok := top.replicas[first].cluster.checkpoints.Deployment(context.Background(), "checkout"); !ok || cp.ID != dep.ID || strings.Join(cp.Flags, ",") != "announced-flag" {
		t.Fatalf("answered before the checkpoint holds the announced deployment: %+v", cp)
	}
	top.replicas[first].nc.Close() // killed: its lease must expire
	top.replicas[first].stop()
	top.stopped[first] = true
	next := top.owner(t)
	checkFor(t, 10*time.Second, func() error {
		deps := top.replicas[next].engine.Deployments()
		if len(deps) == 0 || deps[0].ID != dep.ID || strings.Join(deps[0].Flags, ",") != "announced-flag" {
			return fmt.Errorf("the new owner r%d has %+v, want the announced %s", next+1, deps, dep.ID)
		}
		return nil
	})
	top.untilCommand(t, 60*time.Second)
	if ids, want := top.commandIDs(t), dep.ID+"/flag_kill/announced-flag"; len(ids) != 1 || ids[0] != want {
		t.Fatalf("commands %v, want %s", ids, want)
	}
}
