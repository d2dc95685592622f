package wire

import (
	"encoding/json"
	"time"
)

// Actions a command can ask for; each is a token of rollguard.cmd.<action>.<service>.
const (
	// ActionFlagKill turns a feature flag off (0 %) so the old code path serves everyone.
	ActionFlagKill = "flag_kill"
	// ActionRollback returns the service to its previous stable version/commit.
	ActionRollback = "rollback"
	// ActionDataAudit asks for a check of the data written in a suspect window.
	ActionDataAudit = "data_audit"
)

// Rollback strategies.
const (
	StrategyRedeploy  = "redeploy"
	StrategyBlueGreen = "blue_green_swap"
)

// Result statuses an actuator reports. in_progress is not final: it says
// the actuator is still at work (a redeploy), and restarts the command's
// ack clock, up to the action's max_action_time.
const (
	ResultOK         = "ok"
	ResultFailed     = "failed"
	ResultRejected   = "rejected"
	ResultInProgress = "in_progress"
)

// Headers rollguard sets on commands besides Nats-Msg-Id.
const (
	// HeaderSignature is the base64 (raw URL encoding) ed25519 signature
	// over the exact message data.
	HeaderSignature = "Rollguard-Signature"
	// HeaderKey is the signer's public nkey (a "U…" string): the key id.
	HeaderKey = "Rollguard-Key"
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

// Target is what a command acts on: a flag and the percent to set it to
// (flag_kill), the version and commit to return to and how (rollback), or
// the suspect window and the signals that moved (data_audit).
type Target struct {
	Flag        string     `json:"flag,omitempty"`
	Percent     *int       `json:"percent,omitempty"`
	Version     string     `json:"version,omitempty"`
	Commit      string     `json:"commit,omitempty"`
	Strategy    string     `json:"strategy,omitempty"`
	WindowStart *time.Time `json:"window_start,omitempty"`
	WindowEnd   *time.Time `json:"window_end,omitempty"`
	Signals     []string   `json:"signals,omitempty"`
}

// CommandData is the data of a command event.
type CommandData struct {
	IncidentID string     `json:"incident_id"`
	Action     string     `json:"action"`
	Service    string     `json:"service"`
	Guard      string     `json:"guard"`
	Deployment Deployment `json:"deployment"`
	Target     Target     `json:"target"`
	Evidence   []Evidence `json:"evidence"`
	DryRun     bool       `json:"dry_run"`
	IssuedAt   time.Time  `json:"issued_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
}

// ResultData is the data of an actuator's report on a command, published on
// rollguard.result.<action>.<service> and correlated by CommandID.
type ResultData struct {
	CommandID  string    `json:"command_id"`
	IncidentID string    `json:"incident_id,omitempty"`
	Action     string    `json:"action"`
	Service    string    `json:"service"`
	Status     string    `json:"status"` // ok, failed, rejected; or in_progress before one of them
	Detail     string    `json:"detail,omitempty"`
	Actuator   string    `json:"actuator"`
	DryRun     bool      `json:"dry_run,omitempty"`
	At         time.Time `json:"at"`
}

// StatusData is the data of an incident status update on rollguard.status.<service>.
type StatusData struct {
	IncidentID string    `json:"incident_id"`
	Seq        int       `json:"seq"`
	Service    string    `json:"service"`
	Guard      string    `json:"guard"`
	State      string    `json:"state"`
	Reason     string    `json:"reason"`
	Internal   string    `json:"internal"`
	Customer   string    `json:"customer"`
	NextUpdate time.Time `json:"next_update,omitempty"`
}

// IncidentData is the data of an incident lifecycle event.
type IncidentData struct {
	IncidentID string     `json:"incident_id"`
	Event      string     `json:"event"` // opened, state_changed, closed
	Seq        int        `json:"seq"`
	State      string     `json:"state"`
	From       string     `json:"from,omitempty"`
	Reason     string     `json:"reason,omitempty"`
	Service    string     `json:"service"`
	Guard      string     `json:"guard"`
	Deployment Deployment `json:"deployment"`
	Evidence   []Evidence `json:"evidence"`
	Commands   []string   `json:"commands"`
}

// CommandType is the CloudEvents type of a command, like io.rollguard.command.rollback.v1.
func CommandType(action string) string { return "io.rollguard.command." + action + ".v1" }

// ResultType is the CloudEvents type of an actuator's result.
func ResultType(action string) string { return "io.rollguard.result." + action + ".v1" }

// Event types of incident events and status updates.
const (
	TypeStatus = "io.rollguard.status.v1"
)

// IncidentType is the CloudEvents type of an incident lifecycle event.
func IncidentType(event string) string { return "io.rollguard.incident." + event + ".v1" }

// NewEvent wraps data in a CloudEvents envelope.
func NewEvent(id, typ, subject string, at time.Time, data any) (Event, error) {
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
