package detector

import (
	"sync/atomic"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/sample"
)

// doors is the metric → guards table sources consult, without a lock, to
// drop at the door what no guard reads. The Engine and the sidecars'
// Aggregator share it, so both keep exactly the same samples.
type doors struct {
	routes atomic.Pointer[map[string][]*configs.GuardConfig]
}

// route indexes cfg's guards by name and by the metrics they read.
func route(cfg *configs.Config) (guards map[string]*configs.GuardConfig, byMetric map[string][]*configs.GuardConfig) {
	guards = make(map[string]*configs.GuardConfig, len(cfg.Guards))
	byMetric = map[string][]*configs.GuardConfig{}
	for i := range cfg.Guards {
		g := cfg.Guards[i]
		guards[g.Name] = &g
		seen := map[string]bool{}
		for _, s := range g.Signals {
			for _, m := range configs.InputMetrics(g, s) {
				if !seen[m] {
					byMetric[m] = append(byMetric[m], &g)
					seen[m] = true
				}
			}
		}
	}
	return guards, byMetric
}

func (d *doors) set(byMetric map[string][]*configs.GuardConfig) { d.routes.Store(&byMetric) }

func (d *doors) load(metric string) []*configs.GuardConfig {
	if r := d.routes.Load(); r != nil {
		return (*r)[metric]
	}
	return nil
}

// Wants reports whether any guard reads metric; sources use it to drop the
// rest at the door.
func (d *doors) Wants(metric string) bool {
	return len(d.load(metric)) > 0
}

// Doors lists the (service label, service) pairs of the guards reading
// metric, for decoders that filter on raw label bytes.
func (d *doors) Doors(metric string) []sample.Label {
	gs := d.load(metric)
	out := make([]sample.Label, 0, len(gs))
	for _, g := range gs {
		out = append(out, sample.Label{Name: g.ServiceLabel, Value: g.Service})
	}
	return out
}

// WantsSeries reports whether a guard reads metric for the service the
// labels name; sources use it to keep no state for other services' series.
func (d *doors) WantsSeries(metric string, ls sample.Labels) bool {
	for _, g := range d.load(metric) {
		if ls.Get(g.ServiceLabel) == g.Service {
			return true
		}
	}
	return false
}
