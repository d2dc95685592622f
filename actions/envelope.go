package actions

import (
	"encoding/json"
	"time"

	"github.com/rollguard/rollguard/detector"
)

// Actions a command can ask for.
const (
	ActionFlagKill = "flag_kill"
)

// Event is a CloudEvents 1.0 document in structured JSON mode. It is written
// by hand rather than with the CloudEvents SDK: rollguard needs only the
// envelope, the transport is NATS JetStream with its own headers, and the
// SDK's NATS binding does not set Nats-Msg-Id.
type Event struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
}

// EventSource is the CloudEvents source of everything rollguard publishes.
const EventSource = "/rollguard"

// Target is what a command acts on.
type Target struct {
	Flag    string `json:"flag,omitempty"`
	Percent *int   `json:"percent,omitempty"`
}

// CommandData is the data of a command event.
type CommandData struct {
	IncidentID string              `json:"incident_id"`
	Action     string              `json:"action"`
	Service    string              `json:"service"`
	Guard      string              `json:"guard"`
	Deployment detector.Deployment `json:"deployment"`
	Target     Target              `json:"target"`
	Evidence   []detector.Evidence `json:"evidence"`
	DryRun     bool                `json:"dry_run"`
	ExpiresAt  time.Time           `json:"expires_at"`
}

// IncidentData is the data of an incident lifecycle event.
type IncidentData struct {
	IncidentID string              `json:"incident_id"`
	Event      string              `json:"event"` // opened, state_changed, closed
	State      string              `json:"state"`
	Service    string              `json:"service"`
	Guard      string              `json:"guard"`
	Deployment detector.Deployment `json:"deployment"`
	Evidence   []detector.Evidence `json:"evidence"`
	Commands   []string            `json:"commands"`
}

func newEvent(id, typ, subject string, at time.Time, data any) (Event, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return Event{}, err
	}
	return Event{SpecVersion: "1.0", ID: id, Source: EventSource, Type: typ, Subject: subject,
		Time: at.UTC(), DataContentType: "application/json", Data: b}, nil
}

// CommandID is deterministic for (deployment, step, target), so that a retry,
// a restart or a second replica publishes the same id and JetStream drops the
// duplicate.
func CommandID(deploymentID, step, target string) string {
	return deploymentID + "/" + step + "/" + target
}

// IncidentID is deterministic per deployment: one incident per deployment.
func IncidentID(deploymentID string) string { return "inc-" + deploymentID }
