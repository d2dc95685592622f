package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/alecthomas/kingpin/v2"
	"github.com/nats-io/nats.go"

	"github.com/rollguard/rollguard/detector"
)

// maxDeployMessage bounds a deployment announcement on NATS.
const maxDeployMessage = 1 << 20

// subscribeDeploys announces the deployments published on
// <prefix>.deploy.<service>, in the body format of POST /api/v1/deployments.
// A request (a message with a reply subject) is answered with the
// deployment or the error.
func (d *daemon) subscribeDeploys(prefix string) (*nats.Subscription, error) {
	log := d.log.Named("deploys")
	return d.nc.Subscribe(prefix+".deploy.*", func(m *nats.Msg) {
		service := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		dep, err := detector.DecodeAnnouncement(io.LimitReader(bytes.NewReader(m.Data), maxDeployMessage))
		switch {
		case err != nil:
		case len(m.Data) > maxDeployMessage:
			err = fmt.Errorf("announcement larger than %d bytes", maxDeployMessage)
		case dep.Service == "":
			dep.Service = service
		case dep.Service != service:
			err = fmt.Errorf("service %q does not match the subject's %q", dep.Service, service)
		}
		if err == nil {
			dep.Source = detector.SourceNATS
			dep, err = d.engine.Announce(dep)
			if err != nil {
				err = errors.New(detector.AnnounceError(err))
			}
		}
		reply := map[string]any{"status": "ok", "deployment": dep}
		if err != nil {
			log.Warn("deployment announcement refused", "subject", m.Subject, "error", err)
			reply = map[string]any{"status": "error", "error": err.Error()}
		} else {
			log.Info("deployment announced", "deployment", dep.ID, "service", dep.Service, "version", dep.Version)
		}
		if m.Reply != "" {
			b, _ := json.Marshal(reply)
			_ = m.Respond(b)
		}
	})
}

// deployOptions are the flags of `rollguard deploy`.
type deployOptions struct {
	client                                                   daemonClient
	service, version, previous, commit, prevCommit, strategy string
	id, migration                                            string
	flags                                                    []string
	weight                                                   float64
}

// addDeployCommand registers `rollguard deploy` on app and returns the
// command and its options, filled in once the flags are parsed.
func addDeployCommand(app *kingpin.Application) (*kingpin.CmdClause, *deployOptions) {
	var o deployOptions
	cmd := app.Command("deploy", "Announce a deployment to a running rollguard.")
	addDaemonClientFlags(cmd, &o.client)
	cmd.Flag("service", "The service.").Required().StringVar(&o.service)
	cmd.Flag("version", "The new version (candidate).").Required().StringVar(&o.version)
	cmd.Flag("previous-version", "The stable version it replaces (default: the one rollguard saw last).").StringVar(&o.previous)
	cmd.Flag("commit", "The new version's commit.").StringVar(&o.commit)
	cmd.Flag("previous-commit", "The stable version's commit.").StringVar(&o.prevCommit)
	cmd.Flag("flag", "A feature flag gating the new code (repeat for several).").StringsVar(&o.flags)
	// No default: an announcement without a migration is none, and a
	// re-announcement without one keeps what the deployment has.
	cmd.Flag("migration", "Database migration: none, reversible or irreversible (default: none, or what an earlier announcement of the deployment said).").EnumVar(&o.migration, "none", "reversible", "irreversible")
	cmd.Flag("strategy", "canary, blue_green, rolling or all_at_once.").EnumVar(&o.strategy, "canary", "blue_green", "rolling", "all_at_once")
	cmd.Flag("id", "An id of your own (default: derived from service and versions).").StringVar(&o.id)
	cmd.Flag("weight", "Percent of traffic routed to the new version (throughput signals need it).").Float64Var(&o.weight)
	return cmd, &o
}

// announcement is the body of POST /api/v1/deployments: what the flags say,
// leaving out what they do not.
func (o deployOptions) announcement() map[string]any {
	body := map[string]any{"service": o.service, "version": o.version}
	for k, v := range map[string]string{"previous_version": o.previous, "commit": o.commit,
		"previous_commit": o.prevCommit, "strategy": o.strategy, "id": o.id, "migration": o.migration} {
		if v != "" {
			body[k] = v
		}
	}
	if len(o.flags) > 0 {
		body["flags"] = o.flags
	}
	if o.weight > 0 {
		body["weight"] = o.weight
	}
	return body
}

// announce posts a deployment to a running rollguard and prints it.
func announce(o deployOptions, stdout io.Writer) error {
	b, _ := json.Marshal(o.announcement())
	resp, err := o.client.do(http.MethodPost, "/api/v1/deployments", b)
	if err != nil {
		return fmt.Errorf("announce deployment: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("announce deployment: %w", daemonError(resp))
	}
	_, err = io.Copy(stdout, io.LimitReader(resp.Body, 1<<20))
	return err
}
