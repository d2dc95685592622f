package actions

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
)

// Fencing. In a cluster a replica acts for a guard only while it holds the
// guard's lease (PlaybookOptions.Owns, false from the lease's local
// deadline on). The Playbook checks it at three places, so that a replica
// deposed while it was paused neither decides, nor publishes, nor writes:
//
//   - before every step of the model (verdicts, results, ticks, approvals,
//     closes, deployment changes, restores) it forgets the incidents of
//     the guards it no longer owns, so no step decides for them;
//   - right before publishing each message of the outbox: a message for a
//     guard it no longer owns is dropped from the outbox, never published
//     (the new owner derives its own from the store; a message kept would
//     go out late, after the new owner's, or wedge the ordered outbox);
//   - before saving an incident, and every save is a compare-and-set
//     (KVStore, ErrFenced): a save for a guard it no longer owns is not
//     made, and a save that finds another writer's revision is not
//     retried; the incident's guard is reloaded from the store if the
//     replica still owns it.
//
// What it cannot fence is a pause that falls between the check and the
// publish or the write and lasts longer than the lease's safety margin;
// the Rollguard-Lease header (PlaybookOptions.Lease) names the replica and
// the lease revision each message was sent under, for actuators and audits.

// HeaderLease carries the lease a message was published under: the
// replica id and the KV revision of its lease of the message's guard.
const HeaderLease = "Rollguard-Lease"

// owns reports whether this rollguard acts for guard now.
func (p *Playbook) owns(guard string) bool {
	return p.o.Owns == nil || p.o.Owns(guard)
}

// evictUnowned forgets the incidents of the guards this replica no longer
// owns, before a step can decide anything for them. Called with p.mu held.
func (p *Playbook) evictUnowned() {
	if p.o.Owns == nil {
		return
	}
	gone := map[string]bool{}
	for _, inc := range p.model.incidents {
		if !gone[inc.Guard] && !p.o.Owns(inc.Guard) {
			gone[inc.Guard] = true
		}
	}
	for g := range p.adopted {
		if !p.o.Owns(g) {
			delete(p.adopted, g) // to be adopted again before it decides (acts)
		}
	}
	for _, g := range slices.Sorted(maps.Keys(gone)) {
		p.o.Logger.Warn("guard no longer owned: its incidents are forgotten here, its owner continues them from the store", "guard", g)
		p.model.Release(g)
	}
}

// messageGuard is the guard a playbook message speaks for (commands, status
// updates and incident events all carry it in their data); "" if it has none.
func messageGuard(m Message) string {
	var ev struct {
		Data struct {
			Guard string `json:"guard"`
		} `json:"data"`
	}
	if json.Unmarshal(m.Data, &ev) != nil {
		return ""
	}
	return ev.Data.Guard
}

// fence decides, right before m is published, whether this replica may
// publish it: not when it no longer owns m's guard (a message naming no
// guard is published). A refused message is counted and logged; the
// caller drops it from the outbox. With ok, m comes back with its lease
// header.
func (p *Playbook) fence(m Message) (Message, bool) {
	if p.o.Owns == nil {
		return m, true
	}
	g := messageGuard(m)
	if g == "" {
		return m, true
	}
	if !p.o.Owns(g) {
		p.metrics.fenced.WithLabelValues(kindOf(m.Subject, p.o.Subjects.Prefix)).Inc()
		p.o.Logger.Warn("message not published: this replica no longer owns its guard (its owner sends its own)",
			"id", m.ID, "subject", m.Subject, "guard", g)
		return m, false
	}
	if p.o.Lease != nil {
		if token := p.o.Lease(g); token != "" {
			m.Header = maps.Clone(m.Header)
			if m.Header == nil {
				m.Header = map[string]string{}
			}
			m.Header[HeaderLease] = token
		}
	}
	return m, true
}

// writeFenced handles saves that lost their compare-and-set: each guard's
// incidents are reloaded from the store when this replica still owns it
// (another writer is then a past owner whose last save came late), and
// are left alone otherwise (the other writer is the owner).
func (p *Playbook) writeFenced(ctx context.Context, guards map[string]bool) {
	for _, g := range slices.Sorted(maps.Keys(guards)) {
		if !p.owns(g) {
			continue
		}
		p.step(func(m *Model) Effects { m.Release(g); return Effects{} })
		if err := p.restore(ctx, func(guard string) bool { return guard == g }); err != nil {
			p.o.Logger.Error("incidents of a guard not reloaded after a fenced save", "guard", g, "error", err)
		}
	}
}

// guardLoader is a Store that loads the incidents of some guards only
// (KVStore): their revisions are the only ones a load takes as read.
type guardLoader interface {
	LoadOf(ctx context.Context, want func(guard string) bool) ([]Incident, error)
}

// load reads from the store the incidents of the guards for which want is
// true (all of them, from a store that cannot choose).
func (p *Playbook) load(ctx context.Context, want func(guard string) bool) ([]Incident, error) {
	if l, ok := p.o.Store.(guardLoader); ok {
		return l.LoadOf(ctx, want)
	}
	return p.o.Store.Load(ctx)
}

// isFenced reports whether a save failed its compare-and-set.
func isFenced(err error) bool { return errors.Is(err, ErrFenced) }
