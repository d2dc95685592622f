package main

import (
	"context"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/run"

	"github.com/rollguard/rollguard/cluster"
	"github.com/rollguard/rollguard/cluster/agg"
	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/sources"
)

// clusterState is what a central replica adds to a rollguard: the leases
// of the guards it owns, the checkpoints of their deployments, and the
// forwarder that sends what it ingests for other replicas' guards to them.
type clusterState struct {
	leases      *cluster.Leases
	checkpoints *cluster.Checkpoints
	forwarder   *cluster.Shipper
	aggregator  *detector.Aggregator
}

// ingest is what the receivers feed: the engine itself, or in a cluster
// the aggregator whose ticks go to the engine for the guards this replica
// owns and to their owners for the rest.
type ingest interface {
	sources.Appender
	sources.Filter
}

// owns reports whether this rollguard acts for guard: always, unless it is a
// replica of a cluster that does not hold the guard's lease.
func (d *daemon) owns(guard string) bool {
	return d.cluster == nil || d.cluster.leases.Owns(guard)
}

// leaseToken names the lease this replica acts for guard under — its id
// and the lease's KV revision, a fencing token — for the Rollguard-Lease
// header of the guard's messages; "" on a single rollguard.
func (d *daemon) leaseToken(guard string) string {
	if d.cluster == nil {
		return ""
	}
	rev, ok := d.cluster.leases.Lease(guard)
	if !ok {
		return ""
	}
	return d.cluster.leases.ReplicaID() + "/" + strconv.FormatUint(rev, 10)
}

// initCluster makes this rollguard a central replica: leases over the
// configured guards, deployment checkpoints, and forwarding of ingested
// data by owner. It returns what the receivers feed.
func (d *daemon) initCluster(ctx context.Context, cfg *configs.Config, js jetstream.JetStream) (ingest, error) {
	c := &clusterState{}
	var err error
	log := d.log.Named("cluster")
	c.checkpoints, err = untilReady(ctx, d.log, "bucket "+cfg.NATS.Stream+"_DEPLOYMENTS", func(ctx context.Context) (*cluster.Checkpoints, error) {
		return cluster.NewCheckpoints(ctx, js, cluster.CheckpointOptions{
			Bucket: cfg.NATS.Stream + "_DEPLOYMENTS", Replicas: cfg.NATS.Replicas, Logger: log,
		})
	})
	if err != nil {
		return nil, err
	}
	c.leases, err = untilReady(ctx, d.log, "bucket "+cfg.NATS.Stream+"_LEASES", func(ctx context.Context) (*cluster.Leases, error) {
		return cluster.NewLeases(ctx, js, cluster.LeaseOptions{
			Bucket: cfg.NATS.Stream + "_LEASES", ReplicaID: cfg.Cluster.ReplicaID, TTL: time.Duration(cfg.Cluster.LeaseTTL),
			Replicas: cfg.NATS.Replicas, Logger: log, OnAcquire: d.adopt, OnRelease: d.release,
		})
	})
	if err != nil {
		return nil, err
	}
	c.leases.SetGuards(guardNames(cfg))
	// The engine already registers the detector's metrics under their names;
	// the forwarder's aggregator reports through the forwarder's own.
	c.aggregator = detector.NewAggregator(cfg, detector.AggregatorOptions{Logger: d.log.Named("aggregator")})
	replica := cfg.Cluster.ReplicaID
	c.forwarder = cluster.NewShipper(c.aggregator, cluster.ShipperOptions{
		Publish: func(ctx context.Context, guard string, m agg.Message) error {
			if d.owns(guard) {
				_, _, aggs, err := agg.Decode(m.Data)
				if err != nil {
					return err
				}
				return d.engine.AppendAggregates(aggs)
			}
			return agg.Publish(ctx, js, d.Config().NATS.SubjectPrefix, guard, m)
		},
		Connected:  d.nc.IsConnected,
		Interval:   d.evaluationInterval,
		ID:         func() string { return replica },
		Logger:     log.Named("forward"),
		Registerer: d.reg,
	})
	d.cluster = c
	log.Info("central replica: guards are shared through leases", "replica", replica,
		"lease_ttl", cfg.Cluster.LeaseTTL, "guards", len(cfg.Guards))
	return c.aggregator, nil
}

func guardNames(cfg *configs.Config) []string {
	out := make([]string, 0, len(cfg.Guards))
	for _, g := range cfg.Guards {
		out = append(out, g.Name)
	}
	return out
}

// adopt takes over a guard whose lease this replica just took: its
// deployment under way resumes with the tests' checkpointed states (data
// from now on join their evidence), and its incidents continue from the
// store.
func (d *daemon) adopt(guard string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, g := range d.Config().Guards {
		if g.Name != guard {
			continue
		}
		d.cluster.checkpoints.Forget(g.Service)
		// The stable version first: traffic merged from now on must not
		// make the first version seen the stable one.
		if v, ok := d.cluster.checkpoints.Stable(ctx, g.Service); ok && d.engine.SeedStable(g.Service, v) {
			d.log.Info("stable version restored from its checkpoint", "guard", guard, "service", g.Service, "version", v)
		}
		if dep, ok := d.cluster.checkpoints.Deployment(ctx, g.Service); ok && dep.EndedAt == nil {
			restored := 0
			if st, ok := d.cluster.checkpoints.Tests(ctx, g.Service); ok {
				restored = d.engine.ResumeTests(dep, st, time.Now())
			} else {
				d.engine.Resume(dep, time.Now())
			}
			d.log.Info("deployment resumed from its checkpoint", "guard", guard, "deployment", dep.ID, "tests_restored", restored)
		}
	}
	if err := d.playbook.Adopt(ctx, guard); err != nil {
		d.log.Error("incidents of an adopted guard not restored", "guard", guard, "error", err)
	}
}

// deploymentChanged has the checkpoints save a deployment that opened,
// changed or ended at once, not on the next tick, so that a replica that
// dies a moment later leaves it to the next owner. It never blocks.
func (d *daemon) deploymentChanged() {
	switch {
	case d.cluster != nil:
		d.cluster.checkpoints.Changed()
	case d.checkpoints != nil:
		d.checkpoints.Changed()
	}
}

// release hands a guard's incidents back to the store for its next owner.
func (d *daemon) release(guard string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d.playbook.Release(ctx, guard)
}

// consumerName is a durable consumer's name, one per replica in a cluster
// (each replica reads every result and aggregate and keeps its own guards').
func (d *daemon) consumerName(base string) string {
	if d.cluster == nil {
		return base
	}
	return base + "-" + d.Config().Cluster.ReplicaID
}

// appendOwned merges the aggregates of the guards this replica owns.
func (d *daemon) appendOwned(aggs []detector.Aggregate) error {
	if d.cluster == nil {
		return d.engine.AppendAggregates(aggs)
	}
	mine := aggs[:0:0]
	for _, a := range aggs {
		if d.owns(a.Guard) {
			mine = append(mine, a)
		}
	}
	if len(mine) == 0 {
		return nil
	}
	return d.engine.AppendAggregates(mine)
}

// initCheckpoints gives a single central rollguard the checkpoints a
// cluster's replicas keep: after a restart, a deployment resumed with its
// incident (Restore) goes on with its checkpointed tests, so that α is not
// spent again. It resumes no deployment itself — incidents and traffic
// say what is under way, and a checkpoint can be older than a supersession
// — so a deployment without an incident starts its tests afresh when its
// traffic reopens it.
func (d *daemon) initCheckpoints(ctx context.Context, cfg *configs.Config, js jetstream.JetStream) (err error) {
	d.checkpoints, err = untilReady(ctx, d.log, "bucket "+cfg.NATS.Stream+"_DEPLOYMENTS", func(ctx context.Context) (*cluster.Checkpoints, error) {
		return cluster.NewCheckpoints(ctx, js, cluster.CheckpointOptions{
			Bucket: cfg.NATS.Stream + "_DEPLOYMENTS", Replicas: cfg.NATS.Replicas, Logger: d.log.Named("checkpoints"),
		})
	})
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, g := range cfg.Guards {
		if seen[g.Service] {
			continue
		}
		seen[g.Service] = true
		if st, ok := d.checkpoints.Tests(ctx, g.Service); ok {
			if n := d.engine.RestoreTests(st, time.Now()); n > 0 {
				d.log.Info("tests restored from their checkpoint", "deployment", st.Deployment, "tests_restored", n)
			}
		}
	}
	return nil
}

// addClusterActors runs the leases, the forwarder and the checkpoints (a
// single rollguard's checkpoints only).
func (d *daemon) addClusterActors(g *run.Group) {
	if d.checkpoints != nil {
		ctx, cancel := context.WithCancel(context.Background())
		all := func(string) bool { return true }
		g.Add(func() error {
			return d.checkpoints.Run(ctx, d.evaluationInterval, d.checkpointSource(all))
		}, func(error) { cancel() })
	}
	if d.cluster == nil {
		return
	}
	c := d.cluster
	{
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error { return c.leases.Run(ctx) }, func(error) { cancel() })
	}
	{
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error { return c.forwarder.Run(ctx) }, func(error) { cancel() })
	}
	{
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error {
			return c.checkpoints.Run(ctx, d.evaluationInterval, d.checkpointSource(d.ownsService))
		}, func(error) { cancel() })
	}
}

// checkpointSource is what the checkpoints save of the engine: of the
// services for which keep is true.
func (d *daemon) checkpointSource(keep func(service string) bool) cluster.Source {
	return cluster.Source{Deployments: d.engine.Deployments, Tests: d.engine.TestStates,
		Stable: d.engine.StableVersions, Keep: keep}
}

// ownsService reports whether this replica owns a guard of the service.
func (d *daemon) ownsService(service string) bool {
	for _, g := range d.Config().Guards {
		if g.Service == service && d.owns(g.Name) {
			return true
		}
	}
	return false
}
