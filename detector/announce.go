package detector

import (
	"io"
	"strings"

	"github.com/rollguard/rollguard/internal/jsonbody"
)

// announcement is the body of a deployment announcement, on every surface
// (POST /api/v1/deployments, rollguard.deploy.<service>, rollguard deploy).
type announcement struct {
	ID              string   `json:"id"`
	Service         string   `json:"service"`
	Version         string   `json:"version"`
	PreviousVersion string   `json:"previous_version"`
	Commit          string   `json:"commit"`
	PreviousCommit  string   `json:"previous_commit"`
	Flags           []string `json:"flags"`
	Migration       string   `json:"migration"`
	Strategy        string   `json:"strategy"`
	Weight          float64  `json:"weight"`
}

// DecodeAnnouncement reads one deployment announcement: one JSON object,
// no unknown fields. Errors are written for the sender; an error of the
// reader itself (a body over its limit) is returned unchanged. The source
// is left for the caller to say.
func DecodeAnnouncement(r io.Reader) (Deployment, error) {
	var body announcement
	if err := jsonbody.Decode(r, &body, "deployment", `{"service":"checkout","version":"v2","previous_version":"v1"}`); err != nil {
		return Deployment{}, err
	}
	return Deployment{
		ID: body.ID, Service: body.Service, Version: body.Version, PreviousVersion: body.PreviousVersion,
		Commit: body.Commit, PreviousCommit: body.PreviousCommit, Flags: body.Flags,
		Migration: body.Migration, Strategy: body.Strategy, Weight: body.Weight,
	}, nil
}

// AnnounceError is the message a sender is shown for a refused announcement.
func AnnounceError(err error) string {
	return strings.TrimPrefix(err.Error(), ErrInvalidDeployment.Error()+": ")
}
