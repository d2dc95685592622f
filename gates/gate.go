// Package gates lets rollout controllers ask rollguard whether a deployment
// may go on: Argo Rollouts through its web metric provider, Flagger through
// its webhooks (docs/integrations.md). Decide is the one rule that turns
// what the detector knows of a deployment into a gate's answer; the HTTP
// handlers only select the deployment and say the answer in each
// controller's terms.
package gates

import (
	"fmt"
	"sort"
	"strings"

	"github.com/rollguard/rollguard/detector"
)

// State is what the gate says of a deployment: a detector verdict state,
// or promoted once the deployment ended with the candidate as the new
// stable version.
type State string

// The gate's states.
const (
	StateHealthy            = State(detector.StateHealthy)
	StateRegressed          = State(detector.StateRegressed)
	StateInconclusive       = State(detector.StateInconclusive)
	StateNoData             = State(detector.StateNoData)
	StatePromoted     State = "promoted"
)

// Outcome is what the rollout controller should do with the answer.
type Outcome string

// The outcomes: success lets the rollout go on, failure aborts it (rolls
// back), inconclusive neither.
const (
	Success      Outcome = "success"
	Failure      Outcome = "failure"
	Inconclusive Outcome = "inconclusive"
)

// Standing is what rollguard knows of one deployment: the deployment
// (nil when none of the service is known) and its guards, with their
// latest verdicts where they have one.
type Standing struct {
	Service string
	// Version, when given, is the version asked about: a deployment to
	// another version is not this one.
	Version    string
	Deployment *detector.Deployment
	Guards     []detector.GuardStatus
}

// Evidence is one signal's standing, in the detector's words.
type Evidence struct {
	Guard   string         `json:"guard"`
	Signal  string         `json:"signal"`
	State   detector.State `json:"state"`
	Summary string         `json:"summary"`
}

// Gate is the answer a rollout controller gets.
type Gate struct {
	State   State   `json:"state"`
	Outcome Outcome `json:"outcome"`
	Reason  string  `json:"reason"`
	// Deployment is the deployment judged; absent when none is known.
	Deployment *detector.Deployment `json:"deployment,omitempty"`
	Evidence   []Evidence           `json:"evidence"`
}

// outcome is the gate's rule: success on healthy or promoted, failure on
// regressed, inconclusive otherwise — missing data is never a success.
func outcome(s State) Outcome {
	switch s {
	case StateHealthy, StatePromoted:
		return Success
	case StateRegressed:
		return Failure
	}
	return Inconclusive
}

// Decide is the gate's answer for a deployment. An ended deployment is
// promoted, or inconclusive when it was superseded (its verdicts are no
// longer kept); an active one takes its guards' verdicts folded as the
// detector folds signals: any regression wins, then missing data (a guard
// with no verdict yet counts as missing data), then inconclusive, and
// healthy only when every guard is.
func Decide(s Standing) Gate {
	d := s.Deployment
	if d == nil && s.Version != "" {
		return gate(StateNoData, fmt.Sprintf("rollguard knows no deployment of service %q to version %q: none was announced and no telemetry from it arrived", s.Service, s.Version), nil, nil)
	}
	if d == nil {
		return gate(StateNoData, fmt.Sprintf("rollguard knows no deployment of service %q: none was announced and no telemetry from a new version arrived", s.Service), nil, nil)
	}
	if d.EndedAt != nil {
		if d.EndReason == "promoted" {
			return gate(StatePromoted, fmt.Sprintf("%s %s was promoted: %s stopped serving and %s did not regress", d.Service, d.Version, d.PreviousVersion, d.Version), d, nil)
		}
		why := d.EndReason
		if d.SupersededBy != "" {
			why += " by " + d.SupersededBy
		}
		return gate(StateInconclusive, fmt.Sprintf("deployment %s of %s %s ended (%s) without a promotion", d.ID, d.Service, d.Version, why), d, nil)
	}
	var states []detector.State
	var evidence []Evidence
	var reasons []string
	byState := map[State][]string{}
	guards := append([]detector.GuardStatus(nil), s.Guards...)
	sort.Slice(guards, func(i, j int) bool { return guards[i].Name < guards[j].Name })
	for _, g := range guards {
		v := g.Verdict
		if v == nil || v.Deployment.ID != d.ID {
			byState[StateNoData] = append(byState[StateNoData], g.Name+": no verdict yet")
			states = append(states, detector.StateNoData)
			continue
		}
		for _, ev := range v.Signals {
			evidence = append(evidence, Evidence{Guard: g.Name, Signal: ev.Signal, State: ev.State, Summary: detector.Describe(ev)})
		}
		gs := State(v.State)
		byState[gs] = append(byState[gs], g.Name+": "+detector.Explain(*v))
		states = append(states, v.State)
	}
	state := State(detector.Worst(states...))
	if len(guards) == 0 {
		state = StateNoData
		reasons = append(reasons, fmt.Sprintf("no guard watches service %q", d.Service))
	}
	reasons = append(reasons, byState[state]...)
	return gate(state, strings.Join(reasons, "; "), d, evidence)
}

func gate(s State, reason string, d *detector.Deployment, ev []Evidence) Gate {
	if ev == nil {
		ev = []Evidence{}
	}
	return Gate{State: s, Outcome: outcome(s), Reason: reason, Deployment: d, Evidence: ev}
}
