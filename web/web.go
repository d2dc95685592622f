// Package web serves rollguard's HTTP surface: health and readiness, its own
// metrics, reload, and the JSON API over the detector's and the playbook's
// read models. It decides nothing itself.
package web

import (
	"bytes"
	"encoding/json"
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
)

// Deployments is what the API needs of the deployment tracker.
type Deployments interface {
	Announce(detector.Deployment) (detector.Deployment, error)
	Deployments() []detector.Deployment
	Guards() []detector.GuardStatus
	Series(guard string) ([]detector.SignalSeries, bool)
	History(deploymentID string) (detector.DeploymentSeries, bool)
}

// Incidents is what the API needs of the playbook.
type Incidents interface {
	Incidents() []actions.Incident
	// Incident returns one incident by its id ("inc-d-…").
	Incident(id string) (actions.Incident, bool)
	// Approve releases held commands: id is a command id, or an incident
	// id for every command it holds. It fails with actions.ErrNotFound or
	// actions.ErrNothingToApprove.
	Approve(id, by string) ([]string, error)
}

// Options are the handler's dependencies.
type Options struct {
	Deployments Deployments
	Incidents   Incidents
	// Reload applies the configuration file again; an error means the
	// previous configuration was kept.
	Reload   func() error
	Ready    func() bool
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

// Handler builds the HTTP handler.
func Handler(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.Ready == nil {
		o.Ready = func() bool { return true }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	a := &api{o: o}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "rollguard is healthy.\n")
	})
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !o.Ready() {
			http.Error(w, "rollguard is not ready.", http.StatusServiceUnavailable)
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
	mux.HandleFunc("POST /api/v1/deployments", a.announce)
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
	mux.HandleFunc("POST /api/v1/approvals", a.approve)
	mux.HandleFunc("GET /api/v1/deployments/{id}/series", func(w http.ResponseWriter, r *http.Request) {
		h, ok := o.Deployments.History(r.PathValue("id"))
		if !ok {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no deployment %q", r.PathValue("id")))
			return
		}
		writeJSON(w, http.StatusOK, h)
	})
	a.registerUI(mux)
	return mux
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
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var body approval
	if err := dec.Decode(&body); err != nil {
		var te *json.UnmarshalTypeError
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return approval{}, err
		case errors.Is(err, io.EOF):
			return approval{}, errors.New(`the body is empty: send a JSON object like {"id":"inc-d-3fa2b1c0d4e5","by":"alice"}`)
		case errors.As(err, &te) && te.Field != "":
			return approval{}, fmt.Errorf("decode approval: %s must be %s, not %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
		}
		return approval{}, errors.New("decode approval: " + strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return approval{}, errors.New("decode approval: trailing data after the JSON object")
	}
	body.ID, body.By = strings.TrimSpace(body.ID), strings.TrimSpace(body.By)
	switch {
	case body.ID == "":
		return approval{}, errors.New("id is required: a command id (d-…/action/target) or an incident id (inc-d-…)")
	case body.By == "":
		return approval{}, errors.New("by is required: say who approves, it is recorded in the incident")
	case len(body.By) > maxApprover:
		return approval{}, fmt.Errorf("by is longer than %d bytes", maxApprover)
	case strings.IndexFunc(body.By, unicode.IsControl) >= 0 || !utf8.ValidString(body.By):
		return approval{}, errors.New("by must be printable UTF-8 text")
	}
	return body, nil
}

type api struct{ o Options }

func (a *api) reload(w http.ResponseWriter, _ *http.Request) {
	if err := a.o.Reload(); err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("reload failed, previous configuration kept: %v", err))
		return
	}
	_, _ = io.WriteString(w, "configuration reloaded\n")
}

// announcement is the body of POST /api/v1/deployments.
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
	d, err := DecodeAnnouncement(http.MaxBytesReader(w, r.Body, a.o.MaxBodyBytes))
	if err != nil {
		a.badBody(w, err)
		return
	}
	d, err = a.o.Deployments.Announce(d)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, detector.ErrInvalidDeployment) {
			code = http.StatusBadRequest
		}
		writeError(w, code, AnnounceError(err))
		return
	}
	a.o.Logger.Info("deployment announced", "deployment", d.ID, "service", d.Service, "version", d.Version)
	writeJSON(w, http.StatusCreated, d)
}

// AnnounceError is the message a client is shown for a refused announcement.
func AnnounceError(err error) string {
	return strings.TrimPrefix(err.Error(), detector.ErrInvalidDeployment.Error()+": ")
}

// DecodeAnnouncement reads one deployment announcement (the body of POST
// /api/v1/deployments and of a message on rollguard.deploy.<service>):
// one JSON object, no unknown fields. Errors are written for the sender.
func DecodeAnnouncement(r io.Reader) (detector.Deployment, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var body announcement
	if err := dec.Decode(&body); err != nil {
		var te *json.UnmarshalTypeError
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return detector.Deployment{}, err
		case errors.Is(err, io.EOF):
			return detector.Deployment{}, errors.New(`the body is empty: send a JSON object like {"service":"checkout","version":"v2","previous_version":"v1"}`)
		case errors.As(err, &te) && te.Field != "":
			return detector.Deployment{}, fmt.Errorf("decode deployment: %s must be %s, not %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
		}
		return detector.Deployment{}, errors.New("decode deployment: " + strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return detector.Deployment{}, errors.New("decode deployment: trailing data after the JSON object")
	}
	return detector.Deployment{
		ID: body.ID, Service: body.Service, Version: body.Version, PreviousVersion: body.PreviousVersion,
		Commit: body.Commit, PreviousCommit: body.PreviousCommit, Flags: body.Flags,
		Migration: body.Migration, Strategy: body.Strategy, Weight: body.Weight,
	}, nil
}

func jsonKind(goKind string) string {
	switch goKind {
	case "slice", "array":
		return "a list"
	case "string":
		return "a string"
	case "struct", "map":
		return "an object"
	}
	return "a " + goKind
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"status": "error", "error": msg})
}
