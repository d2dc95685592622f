package actions

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// onWireWindow is how far back a replica that takes a guard over looks for
// what its previous owner published: JetStream's duplicate window, beyond
// which a message published again would not be recognised anyway.
const onWireWindow = 24 * time.Hour

// maxOnWire bounds the ids a playbook remembers as already published.
const maxOnWire = 100_000

// Published returns the messages rollguard signed and stored in the stream
// for the services from since on — commands, incident events and status
// updates — as their event ids with each event's own time. signs
// decides which messages are rollguard's own (a replica's signature);
// others are ignored, so that nobody can make rollguard skip a message by
// publishing junk under its id.
//
// A replica that takes over a guard reads them: its previous owner may
// have published a command and then stopped (paused, killed) before it
// saved the incident, and the new owner, deciding again, must not publish
// it a second time. JetStream would drop the copy as a duplicate, but
// every subscriber of the subject would see both.
func (s StreamResults) Published(ctx context.Context, services []string, since time.Time, signs func(data []byte, header func(string) string) bool) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	if len(services) == 0 {
		return out, nil
	}
	var filters []string
	for _, svc := range services {
		filters = append(filters, s.Subjects.Command("*", svc), s.Subjects.Incident(svc), s.Subjects.Status(svc))
	}
	err := s.read(ctx, filters, since, func(msg jetstream.Msg, md *jetstream.MsgMetadata) {
		if !signs(msg.Data(), msg.Headers().Get) {
			return
		}
		var ev struct {
			ID   string    `json:"id"`
			Time time.Time `json:"time"`
		}
		if json.Unmarshal(msg.Data(), &ev) != nil || ev.ID == "" {
			return
		}
		if ev.Time.IsZero() {
			ev.Time = md.Timestamp
		}
		out[ev.ID] = ev.Time
	})
	if err != nil {
		return out, fmt.Errorf("read published messages: %w", err)
	}
	return out, nil
}

// publishedReader is what a ResultReader may also do (StreamResults does).
type publishedReader interface {
	Published(ctx context.Context, services []string, since time.Time, signs func(data []byte, header func(string) string) bool) (map[string]time.Time, error)
}

// learnOnWire records what is already published for the services of the
// guards a restore or an adoption takes (want), so that flush does not
// publish it again.
func (p *Playbook) learnOnWire(ctx context.Context, want func(guard string) bool) {
	pr, ok := p.o.Stored.(publishedReader)
	if !ok || p.o.Signer == nil || p.o.Config == nil {
		return
	}
	var services []string
	for _, g := range p.o.Config.Guards {
		if want(g.Name) && !contains(services, g.Service) {
			services = append(services, g.Service)
		}
	}
	now := p.o.Now()
	seen, err := pr.Published(ctx, services, now.Add(-onWireWindow), p.o.Signer.Signs)
	if err != nil {
		p.o.Logger.Warn("messages already published for the adopted guards not all read; one may be published again", "error", err)
	}
	p.wireMu.Lock()
	defer p.wireMu.Unlock()
	if p.onWire == nil {
		p.onWire = map[string]time.Time{}
	}
	for id, at := range p.onWire {
		if now.Sub(at) > onWireWindow {
			delete(p.onWire, id)
		}
	}
	for id, at := range seen {
		if len(p.onWire) >= maxOnWire {
			break
		}
		p.onWire[id] = at
	}
}

// alreadyOnWire reports whether the message with id is in the stream
// already, published by an earlier owner, and its time; it is forgotten
// then.
func (p *Playbook) alreadyOnWire(id string) (time.Time, bool) {
	p.wireMu.Lock()
	defer p.wireMu.Unlock()
	at, ok := p.onWire[id]
	if ok {
		delete(p.onWire, id)
	}
	return at, ok
}
