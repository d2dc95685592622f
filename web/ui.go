package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/extension"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/web/chart"
)

// The UI is rendered on the server from embedded templates: no CDN, no
// build step, and it works with JavaScript off (live.js only refreshes).
//
//go:embed ui/*.html ui/style.css ui/live.js
var uiFiles embed.FS

var uiFuncs = template.FuncMap{
	"symbol": stateSymbol,
	"pct": func(r float64) string {
		if math.IsNaN(r) || math.IsInf(r, 0) {
			return "n/a"
		}
		return strconv.FormatFloat(100*r, 'g', 3, 64) + "%"
	},
	"num":  formatNumber,
	"fnum": func(f detector.Float) string { return strconv.FormatFloat(float64(f), 'g', 3, 64) },
	"join": func(xs []string) string {
		if len(xs) == 0 {
			return "none"
		}
		return strings.Join(xs, ", ")
	},
	"target": commandTarget,
	// svg marks a chart as safe HTML: the chart package escapes every text it writes.
	"svg": func(b []byte) template.HTML { return template.HTML(b) }, //nolint:gosec // escaped by chart
}

// formatNumber writes counts as integers and other numbers with four
// significant digits.
func formatNumber(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatFloat(f, 'f', 0, 64)
	}
	return strconv.FormatFloat(f, 'g', 4, 64)
}

// stateSymbol gives each state a symbol, so that no state is told by colour alone.
func stateSymbol(s any) string {
	switch fmt.Sprint(s) {
	case "regressed", "escalated", "failed", "rejected", "timed_out":
		return "▲"
	case "healthy", "stabilized", "closed", "ok":
		return "✓"
	case "no_data", "watching", "held":
		return "◌"
	case "containing", "rolling_back":
		return "⚑"
	}
	return "…"
}

func commandTarget(c actions.CommandRecord) string {
	t := c.Target
	switch c.Action {
	case actions.ActionFlagKill:
		p := 0
		if t.Percent != nil {
			p = *t.Percent
		}
		return fmt.Sprintf("flag %s → %d%%", t.Flag, p)
	case actions.ActionRollback:
		s := "version " + t.Version
		if t.Commit != "" {
			s += " (" + t.Commit + ")"
		}
		return s + " by " + t.Strategy
	case actions.ActionDataAudit:
		if t.WindowStart != nil && t.WindowEnd != nil {
			return fmt.Sprintf("%s → %s; %s", t.WindowStart.UTC().Format("15:04:05"), t.WindowEnd.UTC().Format("15:04:05"), strings.Join(t.Signals, ", "))
		}
	}
	return ""
}

var pages = func() map[string]*template.Template {
	out := map[string]*template.Template{}
	for _, p := range []string{"overview", "lists", "deployment", "incident", "postmortem"} {
		out[p] = template.Must(template.New(p).Funcs(uiFuncs).ParseFS(uiFiles, "ui/layout.html", "ui/blocks.html", "ui/"+p+".html"))
	}
	return out
}()

// page is what every page template sees.
type page struct {
	Title   string
	Nav     string
	Live    bool
	Now     time.Time
	Version string

	Guards      []detector.GuardStatus
	Active      []detector.Deployment
	Deployments []detector.Deployment
	Open        []actions.Incident
	Incidents   []actions.Incident
	Deployment  *detector.Deployment
	Incident    *actions.Incident
	Charts      []chartGroup
	Markdown    template.HTML
}

// chartGroup is one guard's charts on a page.
type chartGroup struct {
	ID     string
	Title  string
	Charts []chart.Chart
}

func (a *api) render(w http.ResponseWriter, name string, status int, p page) {
	p.Now, p.Version = a.o.Now().UTC(), a.o.Version
	var b bytes.Buffer
	if err := pages[name].ExecuteTemplate(&b, "layout", p); err != nil {
		a.o.Logger.Error("render page", "page", name, "error", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func (a *api) notFoundPage(w http.ResponseWriter, what string) {
	a.renderMessage(w, http.StatusNotFound, "Not found", what)
}

func (a *api) renderMessage(w http.ResponseWriter, status int, title, msg string) {
	a.render(w, "postmortem", status, page{Title: title, Markdown: template.HTML("<h1>" + template.HTMLEscapeString(title) + "</h1><p>" + template.HTMLEscapeString(msg) + "</p>"), Incident: &actions.Incident{}})
}

// registerUI adds the pages to mux.
func (a *api) registerUI(mux *http.ServeMux) {
	mux.Handle("GET /ui/", http.FileServerFS(uiFiles))
	mux.HandleFunc("GET /{$}", a.overview)
	mux.HandleFunc("GET /incidents", func(w http.ResponseWriter, _ *http.Request) {
		incs := a.o.Incidents.Incidents()
		a.render(w, "lists", http.StatusOK, page{Title: "Incidents", Nav: "incidents", Incidents: incs, Live: anyOpen(incs)})
	})
	mux.HandleFunc("GET /deployments", func(w http.ResponseWriter, _ *http.Request) {
		deps := a.o.Deployments.Deployments()
		a.render(w, "lists", http.StatusOK, page{Title: "Deployments", Nav: "deployments", Deployments: deps, Live: anyActive(deps)})
	})
	mux.HandleFunc("GET /deployments/{id}", a.deploymentPage)
	mux.HandleFunc("GET /incidents/{id}", a.incidentPage)
	mux.HandleFunc("GET /incidents/{id}/postmortem", a.postmortemPage)
}

func anyOpen(incs []actions.Incident) bool {
	for _, i := range incs {
		if i.Open() {
			return true
		}
	}
	return false
}

func anyActive(deps []detector.Deployment) bool {
	for _, d := range deps {
		if d.EndedAt == nil {
			return true
		}
	}
	return false
}

func (a *api) overview(w http.ResponseWriter, _ *http.Request) {
	p := page{Title: "Overview", Nav: "overview", Guards: a.o.Deployments.Guards()}
	for _, d := range a.o.Deployments.Deployments() {
		if d.EndedAt == nil {
			p.Active = append(p.Active, d)
		}
	}
	for _, inc := range a.o.Incidents.Incidents() {
		if inc.Open() {
			p.Open = append(p.Open, inc)
		}
	}
	p.Live = len(p.Active) > 0 || len(p.Open) > 0
	a.render(w, "overview", http.StatusOK, p)
}

// incidentOf finds the incident of a deployment, if any.
func (a *api) incidentOf(deploymentID string) *actions.Incident {
	if inc, ok := a.o.Incidents.Incident(actions.IncidentID(deploymentID)); ok {
		return &inc
	}
	return nil
}

func (a *api) deploymentPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	hist, ok := a.o.Deployments.History(id)
	inc := a.incidentOf(id)
	if !ok && inc == nil {
		a.notFoundPage(w, fmt.Sprintf("rollguard knows no deployment %q: it keeps the ones under way and the last 100 that ended.", id))
		return
	}
	d := hist.Deployment
	if !ok {
		d = inc.Deployment
	}
	a.render(w, "deployment", http.StatusOK, page{Title: "Deployment " + id, Nav: "deployments", Deployment: &d, Incident: inc,
		Charts: charts(hist, inc), Live: d.EndedAt == nil || (inc != nil && inc.Open())})
}

func (a *api) incidentPage(w http.ResponseWriter, r *http.Request) {
	inc, ok := a.o.Incidents.Incident(r.PathValue("id"))
	if !ok {
		a.notFoundPage(w, fmt.Sprintf("rollguard knows no incident %q.", r.PathValue("id")))
		return
	}
	hist, _ := a.o.Deployments.History(inc.Deployment.ID)
	a.render(w, "incident", http.StatusOK, page{Title: "Incident " + inc.ID, Nav: "incidents", Incident: &inc,
		Charts: charts(hist, &inc), Live: inc.Open()})
}

var markdown = goldmark.New(goldmark.WithExtensions(extension.Table)) // raw HTML stays escaped

func (a *api) postmortemPage(w http.ResponseWriter, r *http.Request) {
	inc, ok := a.o.Incidents.Incident(r.PathValue("id"))
	if !ok {
		a.notFoundPage(w, fmt.Sprintf("rollguard knows no incident %q.", r.PathValue("id")))
		return
	}
	var md, out bytes.Buffer
	if err := actions.RenderPostmortem(&md, inc, a.o.Now()); err != nil {
		a.renderMessage(w, http.StatusInternalServerError, "Post-mortem failed", err.Error())
		return
	}
	if err := markdown.Convert(md.Bytes(), &out); err != nil {
		a.renderMessage(w, http.StatusInternalServerError, "Post-mortem failed", err.Error())
		return
	}
	hist, _ := a.o.Deployments.History(inc.Deployment.ID)
	a.render(w, "postmortem", http.StatusOK, page{Title: "Post-mortem " + inc.ID, Nav: "incidents", Incident: &inc,
		Markdown: template.HTML(out.String()), Charts: charts(hist, &inc)}) //nolint:gosec // goldmark escapes raw HTML
}

// charts renders every guard's signals, marking the incident's actions.
func charts(h detector.DeploymentSeries, inc *actions.Incident) []chartGroup {
	var events []chart.Event
	if inc != nil {
		for _, c := range inc.Commands {
			if c.Published != nil {
				events = append(events, chart.Event{At: *c.Published, Label: c.Action + " sent"})
			}
			if c.ResultAt != nil {
				events = append(events, chart.Event{At: *c.ResultAt, Label: c.Action + " " + c.Status})
			}
		}
		if inc.RecoveredAt != nil {
			events = append(events, chart.Event{At: *inc.RecoveredAt, Label: "stabilized"})
		}
		if inc.EscalatedAt != nil {
			events = append(events, chart.Event{At: *inc.EscalatedAt, Label: "escalated"})
		}
		sort.Slice(events, func(i, j int) bool { return events[i].At.Before(events[j].At) })
	}
	names := make([]string, 0, len(h.Guards))
	for g := range h.Guards {
		names = append(names, g)
	}
	sort.Strings(names)
	var out []chartGroup
	for _, g := range names {
		grp := chartGroup{ID: g, Title: "Guard " + g}
		for _, s := range h.Guards[g] {
			grp.Charts = append(grp.Charts, chart.Signal(s, events, chart.Options{IDPrefix: g})...)
		}
		out = append(out, grp)
	}
	return out
}
