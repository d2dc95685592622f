package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/nats-io/nats.go"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/web"
)

// maxDeployMessage bounds a deployment announcement on NATS.
const maxDeployMessage = 1 << 20

// subscribeDeploys announces the deployments published on
// <prefix>.deploy.<service>, in the body format of POST /api/v1/deployments.
// A request (a message with a reply subject) is answered with the
// deployment or the error.
//
// A central replica applies an announcement only while it owns a guard of
// the service, and only then answers: the owner's deployment is the one
// that is evaluated and acted on, and one a non-owner opened would differ
// (its previous version, its id) and shadow the owner's checkpoint when it
// took the guard over. Announcements every replica refuses alike (they do
// not decode, or no guard watches the service) are answered by all.
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
		var guards []string
		if err == nil && d.cluster != nil {
			if guards = d.ownedGuards(service); len(guards) == 0 && guarded(d.Config(), service) {
				log.Debug("deployment announcement left to the owner of the service's guards", "subject", m.Subject)
				return
			}
		}
		code := http.StatusBadRequest
		if err == nil {
			dep.Source = detector.SourceNATS
			if m.Header.Get(headerAnnouncedVia) == detector.SourceAPI {
				dep.Source = detector.SourceAPI // POST /api/v1/deployments on another replica
			}
			if dep, err = d.engine.Announce(dep); err != nil && !errors.Is(err, detector.ErrInvalidDeployment) {
				code = http.StatusInternalServerError
			}
		}
		if err == nil && d.cluster != nil && !d.awaitCheckpoint(dep) {
			log.Warn("deployment announced but not checkpointed yet: a replica taking the guard over now would not know it",
				"deployment", dep.ID, "service", dep.Service)
		}
		reply := deployReply{Status: "ok", Deployment: &dep, Replica: d.Config().Cluster.ReplicaID, Guards: guards}
		if err != nil {
			log.Warn("deployment announcement refused", "subject", m.Subject, "error", err)
			reply = deployReply{Status: "error", Error: detector.AnnounceError(err), Code: code}
		} else {
			log.Info("deployment announced", "deployment", dep.ID, "service", dep.Service, "version", dep.Version)
		}
		if m.Reply != "" {
			b, _ := json.Marshal(reply)
			_ = m.Respond(b)
		}
	})
}

// checkpointWait bounds how long an owner waits for an announced
// deployment's checkpoint before it answers anyway.
const checkpointWait = 5 * time.Second

// awaitCheckpoint waits until the service's checkpoint holds dep as this
// owner applied it — the checkpoints save a deployment as it opens or
// changes (cluster.go) — so that an answered announcement is one that a
// replica taking the guard over resumes. It reports whether it does.
func (d *daemon) awaitCheckpoint(dep detector.Deployment) bool {
	want, err := json.Marshal(dep)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), checkpointWait)
	defer cancel()
	for {
		if got, ok := d.cluster.checkpoints.Deployment(ctx, dep.Service); ok {
			if b, err := json.Marshal(got); err == nil && bytes.Equal(b, want) {
				return true
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// deployReply answers a deployment announcement on NATS. Code is the HTTP
// status POST /api/v1/deployments answers the same refusal with; Replica
// and Guards say which replica of a cluster applied it, for which of the
// service's guards it owns.
type deployReply struct {
	Status     string               `json:"status"`
	Deployment *detector.Deployment `json:"deployment,omitempty"`
	Error      string               `json:"error,omitempty"`
	Code       int                  `json:"code,omitempty"`
	Replica    string               `json:"replica,omitempty"`
	Guards     []string             `json:"guards,omitempty"`
}

// headerAnnouncedVia, on an announcement a replica forwards, names the
// surface it came in by (api), so that the deployment's source says so.
const headerAnnouncedVia = "Rollguard-Announced-Via"

// announceRetry is how often a forwarded announcement is sent again while
// no owner has answered: a guard changing hands has no owner for a moment.
const announceRetry = time.Second

// announcer is how POST /api/v1/deployments applies announcements: on a
// single rollguard the engine itself; on a central replica, the owners of
// the service's guards, whichever replica the request reached.
func (d *daemon) announcer() web.Announcer {
	if d.cluster == nil {
		return nil // web.Options' default: the engine
	}
	return web.AnnouncerFunc(d.announceToOwners)
}

// announceToOwners sends an announcement on <prefix>.deploy.<service>, as
// a request, and waits until the owners of all the service's guards have
// applied it; it returns the first owner's deployment or refusal. It sends
// again every announceRetry (applying an announcement twice changes
// nothing), and gives up after announceTimeout with web.ErrUnavailable.
func (d *daemon) announceToOwners(ctx context.Context, dep detector.Deployment) (detector.Deployment, error) {
	cfg := d.Config()
	if !guarded(cfg, dep.Service) {
		return d.engine.Announce(dep) // refused here as on every replica: no owner to wait for
	}
	body, err := json.Marshal(announcementBody(dep))
	if err != nil {
		return detector.Deployment{}, err
	}
	replies := make(chan *nats.Msg, 16)
	inbox := d.nc.NewRespInbox()
	sub, err := d.nc.ChanSubscribe(inbox, replies)
	if err != nil {
		return detector.Deployment{}, fmt.Errorf("%w: nats: %v", web.ErrUnavailable, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	msg := nats.NewMsg(cfg.NATS.SubjectPrefix + ".deploy." + dep.Service)
	msg.Reply, msg.Data = inbox, body
	msg.Header.Set(headerAnnouncedVia, detector.SourceAPI)

	timeout := announceTimeout(cfg)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resend := time.NewTicker(announceRetry)
	defer resend.Stop()
	pending := map[string]bool{}
	for _, g := range cfg.Guards {
		if g.Service == dep.Service {
			pending[g.Name] = true
		}
	}
	publish := func() {
		if err := d.nc.PublishMsg(msg); err != nil {
			d.log.Named("deploys").Warn("deployment announcement not forwarded; will retry", "service", dep.Service, "error", err)
		}
	}
	publish()
	var first *detector.Deployment
	for {
		select {
		case m := <-replies:
			var r deployReply
			switch {
			case json.Unmarshal(m.Data, &r) != nil:
			case r.Status != "ok" && r.Code == http.StatusBadRequest:
				return detector.Deployment{}, fmt.Errorf("%w: %s", detector.ErrInvalidDeployment, r.Error)
			case r.Status != "ok":
				return detector.Deployment{}, errors.New(r.Error)
			case r.Deployment != nil:
				if first == nil {
					first = r.Deployment
				}
				for _, g := range r.Guards {
					delete(pending, g)
				}
				if len(pending) == 0 {
					return *first, nil
				}
			}
		case <-resend.C:
			publish()
		case <-ctx.Done():
			return detector.Deployment{}, fmt.Errorf("%w: no replica owning the guards of service %q (%s) applied the announcement within %s: "+
				"a guard may be changing hands; announce again", web.ErrUnavailable, dep.Service, strings.Join(slices.Sorted(maps.Keys(pending)), ", "), timeout)
		}
	}
}

// announceTimeout is how long a forwarded announcement waits for the
// owners: a lease that expires with its dead owner is taken within the
// TTL and a renewal period.
func announceTimeout(cfg *configs.Config) time.Duration {
	return time.Duration(cfg.Cluster.LeaseTTL) + 5*time.Second
}

// guarded reports whether a guard of cfg watches service.
func guarded(cfg *configs.Config, service string) bool {
	for _, g := range cfg.Guards {
		if g.Service == service {
			return true
		}
	}
	return false
}

// ownedGuards lists the guards of service whose lease this replica holds.
func (d *daemon) ownedGuards(service string) []string {
	var out []string
	for _, g := range d.Config().Guards {
		if g.Service == service && d.owns(g.Name) {
			out = append(out, g.Name)
		}
	}
	return out
}

// announcementBody is dep, as decoded from an announcement, in the
// announcement's format again: what it left out stays out (an absent
// flags list is not an empty one).
func announcementBody(dep detector.Deployment) map[string]any {
	body := map[string]any{"service": dep.Service, "version": dep.Version}
	for k, v := range map[string]string{"id": dep.ID, "previous_version": dep.PreviousVersion, "commit": dep.Commit,
		"previous_commit": dep.PreviousCommit, "migration": dep.Migration, "strategy": dep.Strategy} {
		if v != "" {
			body[k] = v
		}
	}
	if dep.Flags != nil {
		body["flags"] = dep.Flags
	}
	if dep.Weight != 0 {
		body["weight"] = dep.Weight
	}
	return body
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
