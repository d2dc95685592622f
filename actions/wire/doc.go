// Package wire owns rollguard's NATS wire contract: the CloudEvents
// envelope, the subjects, the Message handed to a publisher, command
// signing and verification, and the command, result, status and incident
// payloads with the deployment and evidence they carry.
//
// It is what rollguard and its actuators share, so the actuator SDK
// (actions/actuator) depends on it alone. It must import no detector,
// sources, configs or playbook code: the types it mirrors (Deployment,
// Evidence, CohortCounts, Float) are copies with the same JSON encoding,
// converted by package actions.
package wire
