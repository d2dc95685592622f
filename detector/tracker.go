package detector

import (
	"fmt"
	"strconv"
	"time"
)

// Phase is what the playbook knows of a deployment's incident. The
// tracker's rules depend on it: a deployment with an incident in hand is
// never promoted, and one whose incident was handed to people or ended is
// not resumed by a re-announcement but followed by a new generation.
type Phase int

// The phases of a deployment's incident.
const (
	// PhaseNone: no incident was ever opened for the deployment.
	PhaseNone Phase = iota
	// PhaseActing: an incident is open and rollguard is acting on it
	// (containing, rolling back, verifying, stabilized, or holding a command).
	PhaseActing
	// PhaseEscalated: the incident is open and in people's hands.
	PhaseEscalated
	// PhaseClosed: the incident is closed.
	PhaseClosed
)

// Incidents tells the tracker the phase of a deployment's incident; the
// playbook is one. It must not block and must not call back into the engine.
type Incidents interface {
	Phase(deploymentID string) Phase
}

// IncidentsFunc adapts a function to Incidents.
type IncidentsFunc func(deploymentID string) Phase

// Phase implements Incidents.
func (f IncidentsFunc) Phase(id string) Phase { return f(id) }

// maxRetired bounds the old versions remembered per service.
const maxRetired = 32

// maxPending bounds the unannounced versions waiting to supersede a
// deployment under way; under churn the oldest is forgotten.
const maxPending = 8

// Sighting is an unannounced version seen in traffic while a deployment
// was under way: when it was first and last seen.
type Sighting struct {
	Version     string
	First, Last time.Time
}

// Track is what the deployment tracker knows of one service: its stable
// version, the versions it has left behind, and the deployment under way.
type Track struct {
	Stable string
	// Retired are versions that were replaced: earlier stable versions and
	// superseded candidates, newest last. Their traffic never opens a
	// deployment; only an announcement brings one back.
	Retired []string
	// Current is the deployment under way, if any.
	Current *Deployment
	// Pending are unannounced versions seen while Current was under way,
	// newest last. One supersedes Current only once it has served for the
	// hold (global.new_version_hold): a version that changes every few
	// seconds must not end the canary being judged before its verdict.
	Pending []Sighting
}

// The reasons Observe gives for leaving a sample out of every deployment.
const (
	// DropRetired: the version was replaced earlier (other_version).
	DropRetired = "other_version"
	// DropUnconfirmed: the version is new and has not yet served for the
	// hold while another deployment is under way.
	DropUnconfirmed = "unconfirmed_version"
)

// Transition is what one tracker step decided.
type Transition struct {
	// Open is the deployment that starts, if any; it supersedes Current.
	Open *Deployment
	// Update is the new description of the deployment under way, when a
	// re-announcement changed only its details (it keeps its id and evidence).
	Update *Deployment
	// End is the deployment that ends, with its reason set.
	End *Deployment
}

// known reports whether a deployment id is in use: an incident was opened
// for it, or the tracker has seen it end.
type known func(id string) bool

// generationID is the id of the first generation of service moving from
// prev to version that is not in use: d-<hash>, then d-<hash>-2, -3, …
// Generations are deterministic, so a restarted rollguard (which knows the
// incidents it persisted) picks the same id, and commands deduplicate.
func generationID(service, prev, version string, used known) string {
	base := deploymentID(service, prev, version)
	id := base
	for n := 2; used(id); n++ {
		id = base + "-" + strconv.Itoa(n)
	}
	return id
}

func (t Track) retired(version string) bool {
	for _, v := range t.Retired {
		if v == version {
			return true
		}
	}
	return false
}

// retire remembers version as old, unless it is empty or already known.
func (t *Track) retire(version string) {
	if version == "" {
		return
	}
	out := t.Retired[:0:0]
	for _, v := range t.Retired {
		if v != version {
			out = append(out, v)
		}
	}
	out = append(out, version)
	if len(out) > maxRetired {
		out = out[len(out)-maxRetired:]
	}
	t.Retired = out
}

func (t *Track) unretire(version string) {
	out := t.Retired[:0:0]
	for _, v := range t.Retired {
		if v != version {
			out = append(out, v)
		}
	}
	t.Retired = out
}

// supersede ends the current deployment in favour of next.
func (t *Track) supersede(next Deployment, at time.Time) *Deployment {
	cur := t.Current
	if cur == nil {
		return nil
	}
	old := *cur
	old.SupersededBy = next.ID
	old.EndedAt, old.EndReason = &at, "superseded"
	if old.Version != next.Version && old.Version != next.PreviousVersion {
		t.retire(old.Version)
	}
	return &old
}

// Observe is the tracker's rule for traffic of version on the service:
// the first version seen is the stable one; a version never seen before
// opens an implicit deployment from the stable version — at once when no
// deployment is under way, otherwise only once it has been seen serving
// for hold (seen at the start and again at least hold later, never silent
// for longer than quiet in between), so that version churn cannot keep ending
// the deployment being judged; the stable version, the deployment's own
// versions and retired versions change nothing. It returns why the sample
// belongs to no deployment (DropRetired, DropUnconfirmed), or "".
func (t Track) Observe(service, version string, flags []string, now time.Time, hold, quiet time.Duration, used known) (Track, Transition, string) {
	switch {
	case t.Stable == "":
		t.Stable = version
		return t, Transition{}, ""
	case version == t.Stable:
		return t, Transition{}, ""
	case t.Current != nil && (t.Current.Version == version || t.Current.PreviousVersion == version):
		return t, Transition{}, ""
	case t.retired(version):
		return t, Transition{}, DropRetired
	}
	if t.Current != nil && hold > 0 {
		var served bool
		if t, served = t.sighted(version, now, hold, quiet); !served {
			return t, Transition{}, DropUnconfirmed
		}
	}
	d := Deployment{Service: service, Version: version, PreviousVersion: t.Stable,
		Flags: flags, Source: SourceImplicit, StartedAt: now}
	if err := d.validate(); err != nil {
		return t, Transition{}, ""
	}
	d.ID = generationID(service, d.PreviousVersion, d.Version, used)
	t, tr := t.open(d, now)
	return t, tr, ""
}

// sighted records traffic of an unannounced version while a deployment is
// under way and reports whether it has now served for hold. A version
// silent for longer than quiet starts over.
func (t Track) sighted(version string, now time.Time, hold, quiet time.Duration) (Track, bool) {
	for _, p := range t.Pending {
		if p.Version == version && now.Sub(p.Last) < time.Second && now.Sub(p.First) < hold {
			return t, false // seen within the second: nothing new (and no copy per sample)
		}
	}
	out := make([]Sighting, 0, len(t.Pending)+1)
	s := Sighting{Version: version, First: now, Last: now}
	for _, p := range t.Pending {
		if p.Version != version {
			out = append(out, p)
		} else if now.Sub(p.Last) <= quiet {
			s.First = p.First
		}
	}
	if now.Sub(s.First) >= hold {
		t.Pending = out
		return t, true
	}
	out = append(out, s)
	if len(out) > maxPending {
		out = out[len(out)-maxPending:]
	}
	t.Pending = out
	return t, false
}

// Waiting reports whether version is an unannounced version waiting for
// the hold: its first sighting is news, the rest are not.
func (t Track) Waiting(version string) bool {
	for _, p := range t.Pending {
		if p.Version == version {
			return true
		}
	}
	return false
}

func (t Track) open(d Deployment, now time.Time) (Track, Transition) {
	tr := Transition{End: t.supersede(d, now)}
	t.Pending = nil // they were waiting to supersede the deployment that ends
	if t.Stable != d.PreviousVersion {
		t.retire(t.Stable)
		t.Stable = d.PreviousVersion
	}
	t.unretire(d.Version)
	t.unretire(d.PreviousVersion)
	t.Current = &d
	tr.Open = &d
	return t, tr
}

// The sources of a deployment.
const (
	SourceImplicit = "implicit"
	SourceAPI      = "api"
	SourceNATS     = "nats"
)

// Announce is the tracker's rule for an explicit announcement a (already
// defaulted: previous version and flags filled in where the announcement
// left them out, source and start set). Announcing the deployment under
// way again updates its details — fields the announcement leaves out keep
// their values — and keeps its id, start and evidence, unless its incident
// was handed to people or closed, or a different id was asked for: then
// the announcement opens a new generation with its own id, incident and
// commands. An old version's traffic never supersedes an announcement.
func (t Track) Announce(a Deployment, phase func(string) Phase, used known) (Track, Transition, error) {
	if cur := t.Current; cur != nil && cur.Version == a.Version && cur.PreviousVersion == a.PreviousVersion &&
		(a.ID == "" || a.ID == cur.ID) {
		if p := phase(cur.ID); p == PhaseNone || p == PhaseActing {
			d := merge(*cur, a)
			t.Current = &d
			return t, Transition{Update: &d}, nil
		}
		if a.ID == cur.ID {
			return t, Transition{}, invalid("id %q is taken by deployment %s, whose incident has ended or was handed to people: leave id out to open a new generation", a.ID, cur.ID)
		}
	}
	if a.ID != "" {
		if used(a.ID) || (t.Current != nil && t.Current.ID == a.ID) {
			return t, Transition{}, invalid("id %q is taken by an earlier deployment: choose another or leave it out", a.ID)
		}
	} else {
		a.ID = generationID(a.Service, a.PreviousVersion, a.Version, func(id string) bool {
			return used(id) || (t.Current != nil && t.Current.ID == id)
		})
	}
	a.flagsGiven, a.migrationGiven = false, false
	t, tr := t.open(a, a.StartedAt)
	return t, tr, nil
}

// merge applies a re-announcement to the deployment under way: what the
// announcement says wins, what it leaves out is kept.
func merge(cur, a Deployment) Deployment {
	d := cur
	if a.Commit != "" {
		d.Commit = a.Commit
	}
	if a.PreviousCommit != "" {
		d.PreviousCommit = a.PreviousCommit
	}
	if a.flagsGiven {
		d.Flags = a.Flags
	}
	if a.migrationGiven {
		d.Migration = a.Migration
	}
	if a.Strategy != "" {
		d.Strategy = a.Strategy
	}
	if a.Weight != 0 {
		d.Weight = a.Weight
	}
	d.Source = a.Source
	d.flagsGiven, d.migrationGiven = false, false
	return d
}

// Promote ends the deployment under way as promoted: its version is the
// new stable one and the old stable version is retired.
func (t Track) Promote(at time.Time) (Track, Transition) {
	if t.Current == nil {
		return t, Transition{}
	}
	d := *t.Current
	d.EndedAt, d.EndReason = &at, "promoted"
	t.retire(t.Stable)
	t.Stable, t.Current = d.Version, nil
	return t, Transition{End: &d}
}

// End ends the deployment under way for reason (rolled_back: the stable
// version stays; its candidate may be deployed again and then opens a new
// generation).
func (t Track) End(id, reason string, at time.Time) (Track, Transition) {
	if t.Current == nil || t.Current.ID != id {
		return t, Transition{}
	}
	d := *t.Current
	d.EndedAt, d.EndReason = &at, reason
	t.Current = nil
	return t, Transition{End: &d}
}

// NextGeneration follows the deployment under way with a new generation
// of the same versions from at: its incident ended, and whatever happens
// from now on is a new story with its own id, incident and commands.
func (t Track) NextGeneration(id string, at time.Time, used known) (Track, Transition) {
	if t.Current == nil || t.Current.ID != id {
		return t, Transition{}
	}
	next := *t.Current
	next.SupersededBy, next.EndedAt, next.EndReason = "", nil, ""
	next.StartedAt = at
	next.ID = generationID(next.Service, next.PreviousVersion, next.Version, func(x string) bool {
		return used(x) || x == id
	})
	t, tr := t.open(next, at)
	tr.End.EndReason = "incident ended"
	return t, tr
}

// Generation is a deployment's generation: 1 for d-<hash>, n for d-<hash>-n.
func (d Deployment) Generation() int {
	base := deploymentID(d.Service, d.PreviousVersion, d.Version)
	if d.ID == base {
		return 1
	}
	var n int
	if _, err := fmt.Sscanf(d.ID, base+"-%d", &n); err == nil && n > 1 {
		return n
	}
	return 0 // an id chosen by the announcer
}
