package detector

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Migration says whether a deployment's database change can be undone.
const (
	MigrationNone         = "none"
	MigrationReversible   = "reversible"
	MigrationIrreversible = "irreversible"
)

// Deployment is service Service moving from PreviousVersion (stable) to
// Version (candidate).
type Deployment struct {
	ID              string   `json:"id"`
	Service         string   `json:"service"`
	Version         string   `json:"version"`
	PreviousVersion string   `json:"previous_version"`
	Commit          string   `json:"commit,omitempty"`
	PreviousCommit  string   `json:"previous_commit,omitempty"`
	Flags           []string `json:"flags"`
	Migration       string   `json:"migration"`
	Strategy        string   `json:"strategy,omitempty"`
	// Weight is the percent of traffic routed to the candidate, when the
	// deploy tool knows it; throughput signals need it.
	Weight    float64   `json:"weight,omitempty"`
	Source    string    `json:"source"` // "api" or "implicit"
	StartedAt time.Time `json:"started_at"`
	// SupersededBy is set when a newer deployment of the service replaced this one.
	SupersededBy string `json:"superseded_by,omitempty"`
	// EndedAt and EndReason (superseded, promoted) are set once it is over.
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	EndReason string     `json:"end_reason,omitempty"`

	// flagsGiven and migrationGiven say whether an announcement named
	// them, so that a re-announcement that leaves them out keeps them.
	flagsGiven, migrationGiven bool
}

var idRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// MaxFlags bounds the flags one deployment declares, and maxField the
// length of each of its names, versions and commits, so that an
// announcement cannot make an incident too large to store or send.
const (
	MaxFlags = 32
	maxField = 256
)

// ErrInvalidDeployment wraps every reason a deployment announcement is refused.
var ErrInvalidDeployment = errors.New("detector: invalid deployment")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidDeployment, fmt.Sprintf(format, args...))
}

// validate checks an announcement; stable is the stable version seen for the service.
func (d *Deployment) validate() error {
	if d.ID != "" && !idRe.MatchString(d.ID) {
		return invalid("id %q must be 1-64 letters, digits, '_' or '-'", d.ID)
	}
	if d.Service == "" {
		return invalid("service is required")
	}
	if d.Version == "" {
		return invalid("version is required")
	}
	if d.PreviousVersion == "" {
		return invalid("previous_version is required: no stable version of service %q has been seen yet", d.Service)
	}
	if d.Version == d.PreviousVersion {
		return invalid("version and previous_version are both %q", d.Version)
	}
	switch d.Migration {
	case "":
		d.Migration = MigrationNone
	case MigrationNone, MigrationReversible, MigrationIrreversible:
	default:
		return invalid("migration %q must be one of none, reversible, irreversible", d.Migration)
	}
	switch d.Strategy {
	case "", "canary", "blue_green", "rolling", "all_at_once":
	default:
		return invalid("strategy %q must be one of canary, blue_green, rolling, all_at_once", d.Strategy)
	}
	if !(d.Weight >= 0 && d.Weight < 100) {
		return invalid("weight %v must be a percent of traffic, >= 0 and < 100", d.Weight)
	}
	if len(d.Flags) > MaxFlags {
		return invalid("%d flags: a deployment may declare at most %d (each becomes a flag_kill command)", len(d.Flags), MaxFlags)
	}
	for i, f := range d.Flags {
		if strings.TrimSpace(f) == "" {
			return invalid("flags[%d] is empty", i)
		}
		if len(f) > maxField {
			return invalid("flags[%d] is longer than %d bytes", i, maxField)
		}
	}
	for _, f := range []struct{ name, v string }{{"service", d.Service}, {"version", d.Version}, {"previous_version", d.PreviousVersion},
		{"commit", d.Commit}, {"previous_commit", d.PreviousCommit}} {
		if len(f.v) > maxField {
			return invalid("%s is longer than %d bytes", f.name, maxField)
		}
	}
	return nil
}

// deploymentID is deterministic, so that an announcement and the implicit
// detection of the same change, or a restarted rollguard, agree on it and
// every command derived from it deduplicates on NATS.
func deploymentID(service, prev, version string) string {
	h := sha256.Sum256([]byte(service + "\x00" + prev + "\x00" + version))
	return "d-" + hex.EncodeToString(h[:6])
}
