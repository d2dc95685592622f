package gates

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/internal/httpjson"
	"github.com/rollguard/rollguard/web"
)

// Prefix is where the gates are served on the web listener.
const Prefix = "/api/v1/gates/"

// Source is what the gates read: the detector's deployments and guards.
type Source interface {
	// Deployments returns the active deployments, then the recently
	// ended ones, newest first.
	Deployments() []detector.Deployment
	Guards() []detector.GuardStatus
}

// Options are the handler's dependencies.
type Options struct {
	Source Source
	// Announcer applies what Flagger's events announce (the daemon's
	// announcer: in a cluster, the owner of the service's guards); the
	// Source's own Announce when nil, as in web.Options.
	Announcer web.Announcer
	Logger    hclog.Logger
	// MaxBodyBytes bounds webhook bodies (1 MiB when 0).
	MaxBodyBytes int64
}

// Mount serves the gates under Prefix and everything else with next. The
// gates' state-changing request (Flagger's event, which announces) follows
// the web API's rules: the listener's authentication wraps the result, and
// cross-origin browser requests and bodies that are not JSON are refused.
func Mount(next http.Handler, o Options) http.Handler {
	gates := Handler(o)
	mux := http.NewServeMux()
	mux.Handle(Prefix, gates)
	mux.Handle("/", next)
	return mux
}

// Handler serves the gates:
//
//	GET  /api/v1/gates/argo?service=S[&version=V][&deployment=ID]  Argo Rollouts' web metric provider
//	POST /api/v1/gates/flagger/confirm-promotion                   Flagger: 200 only on success
//	POST /api/v1/gates/flagger/rollback                            Flagger: 200 only on failure
//	POST /api/v1/gates/flagger/event                               Flagger's events announce the deployment
func Handler(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.Announcer == nil {
		o.Announcer = web.AnnouncerFunc(func(_ context.Context, d detector.Deployment) (detector.Deployment, error) {
			if a, ok := o.Source.(interface {
				Announce(detector.Deployment) (detector.Deployment, error)
			}); ok {
				return a.Announce(d)
			}
			return detector.Deployment{}, fmt.Errorf("%w: announcements are not accepted here", web.ErrUnavailable)
		})
	}
	h := &handler{o: o}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Prefix+"argo", h.argo)
	mux.HandleFunc("POST "+Prefix+"flagger/confirm-promotion", requireJSON(h.flaggerGate(Success)))
	mux.HandleFunc("POST "+Prefix+"flagger/rollback", requireJSON(h.flaggerGate(Failure)))
	mux.HandleFunc("POST "+Prefix+"flagger/event", requireJSON(h.flaggerEvent))
	mux.HandleFunc(Prefix, func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no gate %s %s: the gates are GET %sargo and POST %sflagger/{confirm-promotion,rollback,event}",
			r.Method, r.URL.Path, Prefix, Prefix))
	})
	return web.CrossOrigin(mux)
}

type handler struct{ o Options }

// errUnknownDeployment is a deployment id rollguard does not know (any more).
var errUnknownDeployment = errors.New("unknown deployment")

// Judge is the gate's answer for a service's deployment: the one with id
// when id is given, else the service's active deployment or, when none is
// active, its most recently ended one — to version when version is given.
func Judge(src Source, service, version, id string) (Gate, error) {
	var dep *detector.Deployment
	for _, d := range src.Deployments() {
		if id != "" && d.ID == id || id == "" && d.Service == service && (version == "" || d.Version == version) {
			dep = &d
			break
		}
	}
	if id != "" && dep == nil {
		return Gate{}, fmt.Errorf("%w %q: rollguard keeps the active deployments and the last 100 ended ones", errUnknownDeployment, id)
	}
	if dep != nil {
		service = dep.Service
	}
	s := Standing{Service: service, Version: version, Deployment: dep}
	for _, g := range src.Guards() {
		if g.Service == service {
			s.Guards = append(s.Guards, g)
		}
	}
	return Decide(s), nil
}

// argo answers Argo Rollouts' web metric provider: always 200 with the
// gate for a known service, so that the AnalysisTemplate's conditions,
// not a measurement error, decide.
func (h *handler) argo(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	service, version, id := q.Get("service"), q.Get("version"), q.Get("deployment")
	if service == "" && id == "" {
		writeError(w, http.StatusBadRequest, "name the deployment: ?service=NAME[&version=VERSION] or ?deployment=ID")
		return
	}
	g, err := Judge(h.o.Source, service, version, id)
	if err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, g)
}

// FlaggerPayload is the body of Flagger's webhooks
// (https://docs.flagger.app/usage/webhooks, "Webhook payload" and "Event
// payload"); fields rollguard does not use are ignored.
type FlaggerPayload struct {
	Name         string            `json:"name"`
	Namespace    string            `json:"namespace"`
	Phase        string            `json:"phase"`
	Checksum     string            `json:"checksum,omitempty"`
	Type         string            `json:"type,omitempty"`
	CanaryWeight int               `json:"canaryWeight,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
}

// The metadata keys rollguard reads from a Flagger webhook.
const (
	MetaService         = "service"
	MetaVersion         = "version"
	MetaPreviousVersion = "previous_version"
	MetaFlags           = "flags"
)

// Service is the rollguard service the canary is: metadata "service", else
// the canary's name.
func (p FlaggerPayload) Service() string {
	if s := p.Metadata[MetaService]; s != "" {
		return s
	}
	return p.Name
}

func (h *handler) decode(w http.ResponseWriter, r *http.Request) (FlaggerPayload, bool) {
	var p FlaggerPayload
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, h.o.MaxBodyBytes))
	if err := dec.Decode(&p); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", h.o.MaxBodyBytes))
			return p, false
		}
		writeError(w, http.StatusBadRequest, "decode Flagger's webhook payload: "+strings.TrimPrefix(err.Error(), "json: "))
		return p, false
	}
	if p.Service() == "" {
		writeError(w, http.StatusBadRequest, `the payload names no canary: Flagger sends {"name": ..., "namespace": ..., "phase": ..., "metadata": {...}}`)
		return p, false
	}
	return p, true
}

// flaggerGate answers 200 when the gate's outcome is want and 403 (which
// Flagger reads as "not now") otherwise, with the gate as the body either
// way: Flagger puts a refusal's body in its events.
func (h *handler) flaggerGate(want Outcome) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := h.decode(w, r)
		if !ok {
			return
		}
		g, err := Judge(h.o.Source, p.Service(), p.Metadata[MetaVersion], "")
		if err != nil {
			writeError(w, http.StatusNotFound, err.Error())
			return
		}
		code := http.StatusOK
		if g.Outcome != want {
			code = http.StatusForbidden
		}
		writeJSON(w, code, g)
	}
}

// flaggerEvent announces the deployment a Flagger event is about, when the
// canary is progressing and the webhook's metadata names the version (the
// service version its telemetry reports; Flagger's checksum is not one).
// Other events are acknowledged and ignored: rollguard also finds a new
// version from its telemetry.
func (h *handler) flaggerEvent(w http.ResponseWriter, r *http.Request) {
	p, ok := h.decode(w, r)
	if !ok {
		return
	}
	version := p.Metadata[MetaVersion]
	if p.Phase != "Progressing" || version == "" {
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "ignored",
			"reason": fmt.Sprintf("only a Progressing event whose webhook metadata has %q announces a deployment (phase %q)", MetaVersion, p.Phase)})
		return
	}
	weight := float64(p.CanaryWeight)
	if w, err := strconv.ParseFloat(p.Metadata["canaryWeight"], 64); err == nil && weight == 0 {
		weight = w // newer Flagger releases also put it in the event's metadata
	}
	d := detector.Deployment{Service: p.Service(), Version: version, PreviousVersion: p.Metadata[MetaPreviousVersion], Strategy: "canary",
		Weight: weight}
	for _, f := range strings.Split(p.Metadata[MetaFlags], ",") {
		if f = strings.TrimSpace(f); f != "" {
			d.Flags = append(d.Flags, f)
		}
	}
	d, err := h.o.Announcer.Announce(r.Context(), d)
	switch {
	case errors.Is(err, detector.ErrInvalidDeployment):
		writeError(w, http.StatusBadRequest, detector.AnnounceError(err))
		return
	case errors.Is(err, web.ErrUnavailable):
		writeError(w, http.StatusServiceUnavailable, strings.TrimPrefix(err.Error(), web.ErrUnavailable.Error()+": "))
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, detector.AnnounceError(err))
		return
	}
	h.o.Logger.Info("deployment announced by Flagger", "deployment", d.ID, "service", d.Service, "version", d.Version,
		"canary", p.Namespace+"/"+p.Name, "weight", weight)
	writeJSON(w, http.StatusAccepted, map[string]any{"status": "announced", "deployment": d})
}

// The gates answer and refuse as the web API does.
var (
	writeJSON   = httpjson.Write
	writeError  = httpjson.Error
	requireJSON = httpjson.Require
)
