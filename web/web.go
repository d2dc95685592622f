// Package web serves rollguard's HTTP surface: health and readiness, its own
// metrics, reload, and the JSON API over the detector's and the playbook's
// read models. It decides nothing itself.
package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/internal/httpjson"
	"github.com/rollguard/rollguard/internal/jsonbody"
)

// Deployments is what the API needs of the deployment tracker.
type Deployments interface {
	Announce(detector.Deployment) (detector.Deployment, error)
	Deployments() []detector.Deployment
	Guards() []detector.GuardStatus
	Series(guard string) ([]detector.SignalSeries, bool)
	History(deploymentID string) (detector.DeploymentSeries, bool)
}

// Announcer applies a deployment announcement where it belongs and returns
// the deployment as it stands. It fails with an error wrapping
// detector.ErrInvalidDeployment (a 400 with the reason) or ErrUnavailable
// (a 503: try again).
type Announcer interface {
	Announce(ctx context.Context, d detector.Deployment) (detector.Deployment, error)
}

// AnnouncerFunc adapts a function to Announcer.
type AnnouncerFunc func(ctx context.Context, d detector.Deployment) (detector.Deployment, error)

// Announce calls f.
func (f AnnouncerFunc) Announce(ctx context.Context, d detector.Deployment) (detector.Deployment, error) {
	return f(ctx, d)
}

// ErrUnavailable wraps an announcement that could not be applied now (in a
// cluster: no replica owning the service's guards answered); what follows
// the prefix is shown to the sender.
var ErrUnavailable = errors.New("web: unavailable")

// Incidents is what the API needs of the playbook.
type Incidents interface {
	Incidents() []actions.Incident
	// Incident returns one incident by its id ("inc-d-…").
	Incident(id string) (actions.Incident, bool)
	// Approve releases held commands: id is a command id, or an incident
	// id for every command it holds. It fails with actions.ErrNotFound or
	// actions.ErrNothingToApprove.
	Approve(id, by string) ([]string, error)
	// Close closes an open incident by a person's decision; Ack records
	// that a person has it in hand. Both fail with actions.ErrNotFound,
	// actions.ErrNotOpen or actions.ErrNoReason.
	Close(id, by, reason string) (actions.Incident, error)
	Ack(id, by, reason string) (actions.Incident, error)
}

// Options are the handler's dependencies.
type Options struct {
	Deployments Deployments
	// Announcer applies POST /api/v1/deployments; Deployments.Announce,
	// here, when nil (a central replica hands announcements to the owner
	// of the service's guards instead).
	Announcer Announcer
	Incidents Incidents
	// Reload applies the configuration file again; an error means the
	// previous configuration was kept.
	Reload func() error
	// Ready says why rollguard should not get traffic now (starting,
	// stopping, a degraded outbox), or nil.
	Ready    func() error
	Gatherer prometheus.Gatherer
	Logger   hclog.Logger
	// MaxBodyBytes bounds API request bodies.
	MaxBodyBytes int64
	// RemoteWrite serves POST /api/v1/write when set.
	RemoteWrite http.Handler
	// Now is the clock post-mortem drafts are dated by; time.Now if nil.
	Now func() time.Time
	// Version is shown in the UI's footer.
	Version string
}

// Handler builds the HTTP handler. State-changing requests must come from
// rollguard's own origin or from a program that is not a browser
// (CrossOrigin), and those with a JSON body must say so (requireJSON).
func Handler(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.Ready == nil {
		o.Ready = func() error { return nil }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Announcer == nil {
		o.Announcer = AnnouncerFunc(func(_ context.Context, d detector.Deployment) (detector.Deployment, error) {
			return o.Deployments.Announce(d)
		})
	}
	a := &api{o: o}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "rollguard is healthy.\n")
	})
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if err := o.Ready(); err != nil {
			http.Error(w, "rollguard is not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "rollguard is ready.\n")
	})
	mux.HandleFunc("POST /-/reload", a.reload)
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /api/v1/guards", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"guards": o.Deployments.Guards()})
	})
	mux.HandleFunc("GET /api/v1/guards/{name}/series", func(w http.ResponseWriter, r *http.Request) {
		series, ok := o.Deployments.Series(r.PathValue("name"))
		if !ok {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no guard %q", r.PathValue("name")))
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"guard": r.PathValue("name"), "series": series})
	})
	mux.HandleFunc("GET /api/v1/deployments", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"deployments": o.Deployments.Deployments()})
	})
	mux.HandleFunc("POST /api/v1/deployments", requireJSON(a.announce))
	// Profiles, as Prometheus serves them, behind the listener's auth.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	if o.RemoteWrite != nil {
		mux.Handle("POST /api/v1/write", o.RemoteWrite)
	}
	mux.HandleFunc("GET /api/v1/incidents", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"incidents": o.Incidents.Incidents()})
	})
	mux.HandleFunc("GET /api/v1/incidents/{id}", a.incident)
	mux.HandleFunc("GET /api/v1/incidents/{id}/postmortem", a.postmortem)
	// Approvals change what rollguard does: like every path but the
	// probes, they sit behind the web listener's Authenticator (see
	// Authenticator.Wrap), the same credentials as POST /api/v1/deployments.
	mux.HandleFunc("POST /api/v1/approvals", requireJSON(a.approve))
	mux.HandleFunc("POST /api/v1/incidents/{id}/close", requireJSON(a.human(true)))
	mux.HandleFunc("POST /api/v1/incidents/{id}/ack", requireJSON(a.human(false)))
	mux.HandleFunc("GET /api/v1/deployments/{id}/series", func(w http.ResponseWriter, r *http.Request) {
		h, ok := o.Deployments.History(r.PathValue("id"))
		if !ok {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no deployment %q", r.PathValue("id")))
			return
		}
		writeJSON(w, http.StatusOK, h)
	})
	a.registerUI(mux)
	return CrossOrigin(mux)
}

func (a *api) incident(w http.ResponseWriter, r *http.Request) {
	inc, ok := a.o.Incidents.Incident(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no incident %q", r.PathValue("id")))
		return
	}
	writeJSON(w, http.StatusOK, inc)
}

func (a *api) postmortem(w http.ResponseWriter, r *http.Request) {
	inc, ok := a.o.Incidents.Incident(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no incident %q", r.PathValue("id")))
		return
	}
	var b bytes.Buffer
	if err := actions.RenderPostmortem(&b, inc, a.o.Now()); err != nil {
		writeError(w, http.StatusInternalServerError, "render post-mortem: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/markdown; charset=utf-8")
	_, _ = w.Write(b.Bytes())
}

// approval is the body of POST /api/v1/approvals.
type approval struct {
	ID string `json:"id"`
	By string `json:"by"`
}

// maxApprover bounds the "by" of an approval, which is kept in the incident.
const maxApprover = 128

func (a *api) approve(w http.ResponseWriter, r *http.Request) {
	body, err := decodeApproval(http.MaxBytesReader(w, r.Body, a.o.MaxBodyBytes))
	if err != nil {
		a.badBody(w, err)
		return
	}
	ids, err := a.o.Incidents.Approve(body.ID, body.By)
	switch {
	case errors.Is(err, actions.ErrNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("no incident or command %q", body.ID))
		return
	case errors.Is(err, actions.ErrNothingToApprove):
		writeError(w, http.StatusConflict, fmt.Sprintf("nothing is waiting for approval in %q: it was approved already or never held", body.ID))
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, "approve: "+err.Error())
		return
	}
	if ids == nil {
		ids = []string{}
	}
	a.o.Logger.Info("commands approved", "id", body.ID, "by", body.By, "approved", strings.Join(ids, ","))
	writeJSON(w, http.StatusOK, map[string]any{"approved": ids})
}

// decodeApproval reads one approval: a JSON object with no unknown fields,
// an id, and who approves.
func decodeApproval(r io.Reader) (approval, error) {
	var body approval
	if err := jsonbody.Decode(r, &body, "approval", `{"id":"inc-d-3fa2b1c0d4e5","by":"alice"}`); err != nil {
		return approval{}, err
	}
	body.ID, body.By = strings.TrimSpace(body.ID), strings.TrimSpace(body.By)
	if body.ID == "" {
		return approval{}, errors.New("id is required: a command id (d-…/action/target) or an incident id (inc-d-…)")
	}
	if err := checkPerson(body.By, "approves"); err != nil {
		return approval{}, err
	}
	return body, nil
}

// checkPerson checks the "by" of a person's decision, which is kept in
// the incident.
func checkPerson(by, does string) error {
	switch {
	case by == "":
		return fmt.Errorf("by is required: say who %s, it is recorded in the incident", does)
	case len(by) > maxApprover:
		return fmt.Errorf("by is longer than %d bytes", maxApprover)
	case strings.IndexFunc(by, unicode.IsControl) >= 0 || !utf8.ValidString(by):
		return errors.New("by must be printable UTF-8 text")
	}
	return nil
}

// decision is the body of POST /api/v1/incidents/{id}/close and /ack.
type decision struct {
	By     string `json:"by"`
	Reason string `json:"reason"`
}

// maxReason bounds the reason of a person's decision.
const maxReason = 1024

// human answers a person's close (or acknowledgement) of an incident.
func (a *api) human(closing bool) http.HandlerFunc {
	verb := "acknowledges"
	if closing {
		verb = "closes"
	}
	return func(w http.ResponseWriter, r *http.Request) {
		var body decision
		if err := jsonbody.Decode(http.MaxBytesReader(w, r.Body, a.o.MaxBodyBytes), &body, "decision", `{"by":"alice","reason":"rolled forward by hand"}`); err != nil {
			a.badBody(w, err)
			return
		}
		body.By, body.Reason = strings.TrimSpace(body.By), strings.TrimSpace(body.Reason)
		err := checkPerson(body.By, verb)
		switch {
		case err != nil:
		case closing && body.Reason == "":
			err = errors.New("reason is required: say why the incident can close, it is recorded in the incident and the post-mortem")
		case len(body.Reason) > maxReason:
			err = fmt.Errorf("reason is longer than %d bytes", maxReason)
		case !utf8.ValidString(body.Reason):
			err = errors.New("reason must be UTF-8 text")
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		id := r.PathValue("id")
		var inc actions.Incident
		if closing {
			inc, err = a.o.Incidents.Close(id, body.By, body.Reason)
		} else {
			inc, err = a.o.Incidents.Ack(id, body.By, body.Reason)
		}
		switch {
		case errors.Is(err, actions.ErrNotFound):
			writeError(w, http.StatusNotFound, fmt.Sprintf("no incident %q", id))
			return
		case errors.Is(err, actions.ErrNotOpen):
			writeError(w, http.StatusConflict, fmt.Sprintf("incident %q is closed already", id))
			return
		case err != nil:
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		a.o.Logger.Info("incident "+map[bool]string{true: "closed", false: "acknowledged"}[closing]+" by a person", "incident", inc.ID, "by", body.By, "reason", body.Reason)
		writeJSON(w, http.StatusOK, inc)
	}
}

type api struct{ o Options }

func (a *api) reload(w http.ResponseWriter, _ *http.Request) {
	if err := a.o.Reload(); err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("reload failed, previous configuration kept: %v", err))
		return
	}
	_, _ = io.WriteString(w, "configuration reloaded\n")
}

// badBody answers a request body that did not decode: 413 when it was too
// large, 400 with the reason otherwise.
func (a *api) badBody(w http.ResponseWriter, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", a.o.MaxBodyBytes))
		return
	}
	writeError(w, http.StatusBadRequest, err.Error())
}

func (a *api) announce(w http.ResponseWriter, r *http.Request) {
	d, err := detector.DecodeAnnouncement(http.MaxBytesReader(w, r.Body, a.o.MaxBodyBytes))
	if err != nil {
		a.badBody(w, err)
		return
	}
	d, err = a.o.Announcer.Announce(r.Context(), d)
	switch {
	case errors.Is(err, detector.ErrInvalidDeployment):
		writeError(w, http.StatusBadRequest, detector.AnnounceError(err))
		return
	case errors.Is(err, ErrUnavailable):
		writeError(w, http.StatusServiceUnavailable, strings.TrimPrefix(err.Error(), ErrUnavailable.Error()+": "))
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, detector.AnnounceError(err))
		return
	}
	a.o.Logger.Info("deployment announced", "deployment", d.ID, "service", d.Service, "version", d.Version)
	writeJSON(w, http.StatusCreated, d)
}

// The web API answers and refuses as every rollguard endpoint does.
var (
	writeJSON   = httpjson.Write
	writeError  = httpjson.Error
	requireJSON = httpjson.Require
)
