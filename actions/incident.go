package actions

import (
	"time"

	"github.com/rollguard/rollguard/detector"
)

// Incident states: watching → containing → rolling_back → verifying →
// stabilized | escalated → closed. An incident waits in watching while its
// first action is held (approval, budget, cooldown).
const (
	StateWatching    = "watching"
	StateContaining  = "containing"
	StateRollingBack = "rolling_back"
	StateVerifying   = "verifying"
	StateStabilized  = "stabilized"
	StateEscalated   = "escalated"
	StateClosed      = "closed"
)

// Command statuses.
const (
	CommandHeld      = "held"      // waiting for approval or the cooldown
	CommandQueued    = "queued"    // in the durable outbox, not yet stored in JetStream
	CommandPublished = "published" // stored in JetStream, no result yet
	CommandOK        = ResultOK
	CommandFailed    = ResultFailed
	CommandRejected  = ResultRejected
	CommandTimedOut  = "timed_out" // no result within ack_timeout
	CommandCancelled = "cancelled" // held when its incident closed: never sent
)

// Timeline entry kinds.
const (
	EntryState    = "state"
	EntryCommand  = "command"
	EntryResult   = "result"
	EntryStatus   = "status"
	EntryApproval = "approval"
	EntryEvidence = "evidence"
	EntryHuman    = "human" // a person acknowledged or closed the incident
)

// Incident is the playbook's record of one regressed deployment. It is
// what is kept in JetStream KV, so every field needed to continue it after a
// restart is exported.
type Incident struct {
	ID         string              `json:"id"`
	Guard      string              `json:"guard"`
	Service    string              `json:"service"`
	State      string              `json:"state"`
	Reason     string              `json:"reason"`
	DryRun     bool                `json:"dry_run"`
	Deployment detector.Deployment `json:"deployment"`
	// Trigger is the evidence of the verdict that opened the incident;
	// Latest that of the last verdict seen.
	Trigger []detector.Evidence `json:"trigger"`
	Latest  []detector.Evidence `json:"latest"`
	// Ladder is the actions in the order they are tried (flag_kill,
	// rollback); Rung is the one in progress, -1 before the first.
	Ladder []string `json:"ladder"`
	Rung   int      `json:"rung"`
	// Forward is set when rollback is ruled out (irreversible migration), with why.
	Forward string `json:"forward_mitigation,omitempty"`

	OpenedAt    time.Time  `json:"opened_at"`
	DetectedAt  time.Time  `json:"detected_at"`
	MitigatedAt *time.Time `json:"mitigated_at,omitempty"`
	RecoveredAt *time.Time `json:"recovered_at,omitempty"`
	EscalatedAt *time.Time `json:"escalated_at,omitempty"`
	ClosedAt    *time.Time `json:"closed_at,omitempty"`
	UpdatedAt   time.Time  `json:"updated_at"`
	// AckedBy and AckedAt say who took the incident in hand; ClosedBy and
	// CloseReason who closed it, when a person did.
	AckedBy     string     `json:"acked_by,omitempty"`
	AckedAt     *time.Time `json:"acked_at,omitempty"`
	ClosedBy    string     `json:"closed_by,omitempty"`
	CloseReason string     `json:"close_reason,omitempty"`

	Timeline []TimelineEntry `json:"timeline"`
	Commands []CommandRecord `json:"commands"`
	Statuses []StatusRecord  `json:"statuses"`

	// Bookkeeping of the state machine.
	RungStartedAt time.Time  `json:"rung_started_at"` // when the rung's action took effect
	VerifyFrom    *time.Time `json:"verify_from,omitempty"`
	HealthySince  *time.Time `json:"healthy_since,omitempty"`
	NextStatusAt  time.Time  `json:"next_status_at"`
	EventSeq      int        `json:"event_seq"`
	StatusSeq     int        `json:"status_seq"`
}

// TimelineEntry is one thing that happened to an incident.
type TimelineEntry struct {
	At        time.Time           `json:"at"`
	Kind      string              `json:"kind"` // state, command, result, status, approval, evidence
	From      string              `json:"from,omitempty"`
	To        string              `json:"to,omitempty"`
	Reason    string              `json:"reason"`
	CommandID string              `json:"command_id,omitempty"`
	Evidence  []detector.Evidence `json:"evidence,omitempty"`
}

// CommandRecord is one command of an incident, from issue to result.
type CommandRecord struct {
	ID         string     `json:"id"`
	Action     string     `json:"action"`
	Subject    string     `json:"subject"`
	Target     Target     `json:"target"`
	DryRun     bool       `json:"dry_run"`
	Status     string     `json:"status"`
	HoldReason string     `json:"hold_reason,omitempty"`
	ApprovedBy string     `json:"approved_by,omitempty"`
	IssuedAt   time.Time  `json:"issued_at"`
	SentAt     *time.Time `json:"sent_at,omitempty"` // handed to the outbox
	Published  *time.Time `json:"published_at,omitempty"`
	// AckFrom starts the ack_timeout: the publish, or a restart, since a
	// result sent while rollguard was down waits in the stream.
	AckFrom  *time.Time  `json:"ack_from,omitempty"`
	ResultAt *time.Time  `json:"result_at,omitempty"`
	Result   *ResultData `json:"result,omitempty"`
	// Progress is the actuator's latest in_progress report, if any.
	Progress *ResultData `json:"progress,omitempty"`
	// Step groups the commands sent together (all flags of one flag kill).
	Step int `json:"step"`
}

// StatusRecord is one status update sent.
type StatusRecord struct {
	Seq      int       `json:"seq"`
	At       time.Time `json:"at"`
	State    string    `json:"state"`
	Internal string    `json:"internal"`
	Customer string    `json:"customer"`
}

// Open reports whether the incident is still being followed.
func (inc *Incident) Open() bool { return inc.State != StateClosed }

// Clone is a deep enough copy for readers outside the playbook.
func (inc *Incident) Clone() Incident {
	c := *inc
	c.Timeline = append([]TimelineEntry(nil), inc.Timeline...)
	c.Commands = append([]CommandRecord(nil), inc.Commands...)
	c.Statuses = append([]StatusRecord(nil), inc.Statuses...)
	c.Ladder = append([]string(nil), inc.Ladder...)
	return c
}
