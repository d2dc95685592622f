package actuator

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/rollguard/rollguard/actions/wire"
)

// maxIDLength bounds a command id: it becomes part of a result's
// Nats-Msg-Id and of log lines.
const maxIDLength = 1024

// DecodeCommand decodes a command's CloudEvent and checks that it is one:
// CloudEvents 1.0, an id, a command type for its action, and data whose
// action and service are the ones of the subject it came on (the signature
// covers the data, not the subject). It does not check the signature or the
// expiry; Run does.
func DecodeCommand(subject string, data []byte) (Command, error) {
	c := Command{Subject: subject, Raw: data}
	if err := json.Unmarshal(data, &c.Event); err != nil {
		return Command{}, fmt.Errorf("decode event: %w", err)
	}
	ev := &c.Event
	if ev.SpecVersion != "1.0" {
		return Command{}, fmt.Errorf("specversion %q is not 1.0", ev.SpecVersion)
	}
	if ev.ID == "" {
		return Command{}, errors.New("event id is empty")
	}
	if !validID(ev.ID) {
		return Command{}, fmt.Errorf("event id %.64q is longer than %d bytes or holds control characters", ev.ID, maxIDLength)
	}
	if len(ev.Data) == 0 || string(ev.Data) == "null" {
		return Command{}, errors.New("event has no data")
	}
	if err := json.Unmarshal(ev.Data, &c.Data); err != nil {
		return Command{}, fmt.Errorf("decode data: %w", err)
	}
	d := &c.Data
	if !validToken(d.Action) {
		return Command{}, fmt.Errorf("data.action %.64q is not an action name", d.Action)
	}
	if !validService(d.Service) {
		return Command{}, fmt.Errorf("data.service %.64q is not a service name", d.Service)
	}
	if want := wire.CommandType(d.Action); ev.Type != want {
		return Command{}, fmt.Errorf("type %.64q is not %s", ev.Type, want)
	}
	if !strings.HasSuffix(subject, ".cmd."+d.Action+"."+d.Service) {
		return Command{}, fmt.Errorf("data says %s for %s but it came on subject %s", d.Action, d.Service, subject)
	}
	if d.ExpiresAt.IsZero() {
		return Command{}, errors.New("data.expires_at is missing")
	}
	return c, nil
}

// validToken reports whether s can be one token of a NATS subject.
func validToken(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar
	})
}

// validService reports whether s can end a subject: tokens separated by dots.
func validService(s string) bool {
	for t := range strings.SplitSeq(s, ".") {
		if !validToken(t) {
			return false
		}
	}
	return true
}

// validID reports whether id can go into a header and a log line.
func validID(id string) bool {
	return len(id) <= maxIDLength && !strings.ContainsFunc(id, func(r rune) bool {
		return unicode.IsControl(r) || r == unicode.ReplacementChar
	})
}
