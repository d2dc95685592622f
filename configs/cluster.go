package configs

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// ClusterConfig makes this rollguard one replica of a central cluster:
// guards are shared through leases in JetStream KV, every replica accepts
// any input and forwards what belongs to guards it does not own, and only
// a guard's owner evaluates and acts. Empty ReplicaID: a single rollguard.
type ClusterConfig struct {
	// ReplicaID names this replica in leases; unique in the cluster (a pod name).
	ReplicaID string `yaml:"replica_id"`
	// LeaseTTL is how long a dead owner keeps its guards before another
	// replica takes them; the owner renews every third of it.
	LeaseTTL Duration `yaml:"lease_ttl"`
}

// DefaultCluster is a single rollguard.
var DefaultCluster = ClusterConfig{LeaseTTL: Duration(15 * time.Second)}

// UnmarshalYAML sets the defaults before decoding.
func (c *ClusterConfig) UnmarshalYAML(n *yaml.Node) error {
	*c = DefaultCluster
	type plain ClusterConfig
	return n.Decode((*plain)(c))
}

// Clustered reports whether this rollguard is a replica of a cluster.
func (c *Config) Clustered() bool { return c.Cluster.ReplicaID != "" }

func (c *Config) validateCluster() []fieldError {
	var errs []fieldError
	add := func(path, format string, args ...any) {
		errs = append(errs, fieldError{path, fmt.Sprintf(format, args...)})
	}
	if c.Cluster.ReplicaID != "" {
		if !nameRe.MatchString(c.Cluster.ReplicaID) {
			add("cluster.replica_id", "%q must contain only letters, digits, '_' and '-'", c.Cluster.ReplicaID)
		}
		if c.NATS.URL == "" {
			add("cluster.replica_id", "a cluster needs a shared NATS: set nats.url")
		}
		if c.Cluster.LeaseTTL < Duration(time.Second) {
			add("cluster.lease_ttl", "must be >= 1s")
		}
	}
	if c.NATS.Replicas < 1 || c.NATS.Replicas > 5 {
		add("nats.replicas", "must be between 1 and 5 (3 on a three-node cluster)")
	}
	return errs
}

// SetReplicaID sets the replica id from the command line (a pod's name, say),
// over the file's, and checks the cluster settings again.
func (c *Config) SetReplicaID(id string) error {
	if id == "" {
		return nil
	}
	c.Cluster.ReplicaID = id
	if errs := c.validateCluster(); len(errs) > 0 {
		return fmt.Errorf("--cluster.replica-id: %s: %s", errs[0].path, errs[0].msg)
	}
	return nil
}
