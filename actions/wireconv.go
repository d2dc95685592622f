package actions

import (
	"github.com/rollguard/rollguard/actions/wire"
	"github.com/rollguard/rollguard/detector"
)

// WireDeployment is d as commands and incident events carry it.
func WireDeployment(d detector.Deployment) wire.Deployment {
	return wire.Deployment{ID: d.ID, Service: d.Service, Version: d.Version, PreviousVersion: d.PreviousVersion,
		Commit: d.Commit, PreviousCommit: d.PreviousCommit, Flags: d.Flags, Migration: d.Migration,
		Strategy: d.Strategy, Weight: d.Weight, Source: d.Source, StartedAt: d.StartedAt,
		SupersededBy: d.SupersededBy, EndedAt: d.EndedAt, EndReason: d.EndReason}
}

// WireEvidence is evs as commands and incident events carry them; nil stays nil.
func WireEvidence(evs []detector.Evidence) []wire.Evidence {
	if evs == nil {
		return nil
	}
	out := make([]wire.Evidence, len(evs))
	for i, e := range evs {
		out[i] = wire.Evidence{Signal: e.Signal, Kind: e.Kind, State: string(e.State),
			Baseline: wireCohort(e.Baseline), Candidate: wireCohort(e.Candidate),
			Estimate: wire.Float(e.Estimate), IntervalLow: wire.Float(e.IntervalLow), IntervalHigh: wire.Float(e.IntervalHigh),
			Theta0: e.Theta0, EValue: wire.Float(e.EValue), LogEValue: e.LogEValue, PValue: e.PValue, Threshold: e.Threshold, Alpha: e.Alpha,
			Ticks: e.Ticks, Quantile: e.Quantile, Boundary: e.Boundary, WindowStart: e.WindowStart, WindowEnd: e.WindowEnd,
			CandidateSeen: e.CandidateSeen, BaselineSeen: e.BaselineSeen, Reason: e.Reason}
		if m := e.Model; m != nil {
			out[i].Model = &wire.Model{Dispersion: m.Dispersion, PodSpread: m.PodSpread, Edge: m.Edge,
				CandidatePods: m.CandidatePods, BaselinePods: m.BaselinePods, Assumption: m.Assumption}
		}
	}
	return out
}

func wireCohort(c detector.CohortCounts) wire.CohortCounts {
	return wire.CohortCounts{Version: c.Version, Total: c.Total, Bad: c.Bad, Ratio: c.Ratio}
}

// DetectorEvidence is the reverse of WireEvidence: evidence read off the
// wire as the detector wrote it.
func DetectorEvidence(evs []wire.Evidence) []detector.Evidence {
	if evs == nil {
		return nil
	}
	out := make([]detector.Evidence, len(evs))
	for i, e := range evs {
		out[i] = detector.Evidence{Signal: e.Signal, Kind: e.Kind, State: detector.State(e.State),
			Baseline: detectorCohort(e.Baseline), Candidate: detectorCohort(e.Candidate),
			Estimate: detector.Float(e.Estimate), IntervalLow: detector.Float(e.IntervalLow), IntervalHigh: detector.Float(e.IntervalHigh),
			Theta0: e.Theta0, EValue: detector.Float(e.EValue), LogEValue: e.LogEValue, PValue: e.PValue, Threshold: e.Threshold, Alpha: e.Alpha,
			Ticks: e.Ticks, Quantile: e.Quantile, Boundary: e.Boundary, WindowStart: e.WindowStart, WindowEnd: e.WindowEnd,
			CandidateSeen: e.CandidateSeen, BaselineSeen: e.BaselineSeen, Reason: e.Reason}
		if m := e.Model; m != nil {
			out[i].Model = &detector.Model{Dispersion: m.Dispersion, PodSpread: m.PodSpread, Edge: m.Edge,
				CandidatePods: m.CandidatePods, BaselinePods: m.BaselinePods, Assumption: m.Assumption}
		}
	}
	return out
}

func detectorCohort(c wire.CohortCounts) detector.CohortCounts {
	return detector.CohortCounts{Version: c.Version, Total: c.Total, Bad: c.Bad, Ratio: c.Ratio}
}
