package main

import (
	"slices"
	"time"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/sources/remotewrite"
	"github.com/rollguard/rollguard/sources/scrape"
)

// versionLabels are the labels whose values name a series' service
// version, for the per-version series budget (limits.max_series_per_version):
// every guard's service and version labels. They are read when the inputs
// are built; a guard added by a reload with labels of its own shares the
// budget of its service's other series until the next restart.
func versionLabels(cfg *configs.Config) []string {
	var out []string
	for _, g := range cfg.Guards {
		for _, l := range []string{g.ServiceLabel, g.VersionLabel} {
			if l != "" && !slices.Contains(out, l) {
				out = append(out, l)
			}
		}
	}
	slices.Sort(out)
	return out
}

// remoteWriteWithLimits sets the per-point limits of remote write.
func remoteWriteWithLimits(c remotewrite.Config, cfg *configs.Config) remotewrite.Config {
	l := cfg.Limits
	c.MaxSeriesPerVersion, c.VersionLabels = l.MaxSeriesPerVersion, versionLabels(cfg)
	c.MaxTimestampAhead = time.Duration(l.MaxTimestampAhead)
	c.MaxPointsPerRequest, c.MaxBucketsPerHistogram = l.MaxPointsPerRequest, l.MaxBucketsPerHistogram
	return c
}

// scrapeWithLimits sets the per-point limits of scrapes.
func scrapeWithLimits(c scrape.Config, cfg *configs.Config) scrape.Config {
	l := cfg.Limits
	c.MaxSeriesPerVersion, c.VersionLabels = l.MaxSeriesPerVersion, versionLabels(cfg)
	c.MaxTimestampAhead = time.Duration(l.MaxTimestampAhead)
	c.MaxBucketsPerHistogram = l.MaxBucketsPerHistogram
	return c
}
