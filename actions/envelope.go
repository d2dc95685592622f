package actions

import "github.com/rollguard/rollguard/actions/wire"

// The NATS wire contract lives in package wire, which the actuator SDK
// imports without the playbook; these names keep it reachable as
// actions.X for the rest of rollguard.

// Actions, rollback strategies, result statuses, headers and event types.
const (
	ActionFlagKill    = wire.ActionFlagKill
	ActionRollback    = wire.ActionRollback
	ActionDataAudit   = wire.ActionDataAudit
	StrategyRedeploy  = wire.StrategyRedeploy
	StrategyBlueGreen = wire.StrategyBlueGreen
	ResultOK          = wire.ResultOK
	ResultFailed      = wire.ResultFailed
	ResultRejected    = wire.ResultRejected
	ResultInProgress  = wire.ResultInProgress
	HeaderSignature   = wire.HeaderSignature
	HeaderKey         = wire.HeaderKey
	EventSource       = wire.EventSource
	TypeStatus        = wire.TypeStatus
)

// Envelope, payloads, messages, subjects, publisher and signatures.
type (
	Event              = wire.Event
	Target             = wire.Target
	CommandData        = wire.CommandData
	ResultData         = wire.ResultData
	StatusData         = wire.StatusData
	IncidentData       = wire.IncidentData
	Message            = wire.Message
	Subjects           = wire.Subjects
	JetStreamPublisher = wire.JetStreamPublisher
	Signer             = wire.Signer
	Verifier           = wire.Verifier
)

// Functions of the wire contract.
var (
	NewEvent               = wire.NewEvent
	CommandType            = wire.CommandType
	ResultType             = wire.ResultType
	IncidentType           = wire.IncidentType
	CommandID              = wire.CommandID
	IncidentID             = wire.IncidentID
	EnsureStream           = wire.EnsureStream
	EnsureStreamReplicated = wire.EnsureStreamReplicated
	NewSigner              = wire.NewSigner
	LoadSigner             = wire.LoadSigner
	NewVerifier            = wire.NewVerifier

	newEvent = wire.NewEvent
)

// Reasons a signature check fails.
var (
	ErrUnsigned     = wire.ErrUnsigned
	ErrUnknownKey   = wire.ErrUnknownKey
	ErrBadSignature = wire.ErrBadSignature
	// ErrPreempted: JetStream holds a different message under the id.
	ErrPreempted = wire.ErrPreempted
)
