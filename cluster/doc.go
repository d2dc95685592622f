// Package cluster runs rollguard over more than one process, with NATS
// JetStream as the distributed engine (nothing here elects or votes). It
// owns what moves between processes:
//
//   - Leases: central replicas share guards through JetStream KV leases.
//   - Checkpoints: each service's deployment under way, kept in KV and saved
//     every tick, so that the replica that takes a guard over resumes it.
//   - Shipper: flushes an Aggregator every tick and ships one message per
//     guard, in order, with a bounded backlog while NATS is away; a sidecar
//     ships to the centrals, a replica forwards to a guard's owner.
//
// Sub-package agg is the aggregates' wire format and their JetStream stream.
// Cluster knows nothing of incidents, commands, HTTP or the daemon's
// configuration: intervals, ids and ownership are handed in as functions.
package cluster
