package configs

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestKubernetesManifests keeps deploy/kubernetes true: every rollguard
// configuration its ConfigMaps carry is valid (with a replica id, as the pod
// name gives it), the central one is a cluster on R3, the sidecar one is a
// sidecar.
func TestKubernetesManifests(t *testing.T) {
	files, err := filepath.Glob("../deploy/kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	found := map[string]*Config{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var doc struct {
				Kind     string                `yaml:"kind"`
				Metadata struct{ Name string } `yaml:"metadata"`
				Data     map[string]string     `yaml:"data"`
			}
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			text, ok := doc.Data["rollguard.yml"]
			if doc.Kind != "ConfigMap" || !ok {
				continue
			}
			cfg, err := Parse([]byte(text))
			if err == nil {
				err = cfg.SetReplicaID("rollguard-0")
			}
			if err != nil {
				t.Errorf("%s: ConfigMap %s: %v", f, doc.Metadata.Name, err)
				continue
			}
			found[doc.Metadata.Name] = cfg
		}
	}
	if c := found["rollguard-central"]; c == nil || !c.Clustered() || c.NATS.Replicas != 3 {
		t.Errorf("central configuration %+v: want a cluster replica on R3", c)
	}
	if c := found["rollguard-sidecar"]; c == nil || c.Mode != ModeSidecar {
		t.Errorf("sidecar configuration: want mode sidecar")
	}
}

// TestSetReplicaID: the command line's replica id is checked like the file's.
func TestSetReplicaID(t *testing.T) {
	cfg, err := Parse([]byte("nats: {url: nats://n:4222}\nguards: [{name: a, service: a, signals: [{name: e}]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Clustered() {
		t.Fatal("clustered without a replica id")
	}
	if err := cfg.SetReplicaID("rollguard-1"); err != nil || !cfg.Clustered() {
		t.Fatalf("valid id: %v", err)
	}
	if err := cfg.SetReplicaID("pod.1"); err == nil || !strings.Contains(err.Error(), "cluster.replica_id") {
		t.Fatalf("bad id: %v", err)
	}
	local, _ := Parse([]byte("guards: [{name: a, service: a, signals: [{name: e}]}]\n"))
	if err := local.SetReplicaID("r1"); err == nil || !strings.Contains(err.Error(), "set nats.url") {
		t.Fatalf("replica without a shared NATS: %v", err)
	}
}
