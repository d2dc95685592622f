package actions

import (
	"strings"
	"text/template"

	"github.com/hashicorp/go-hclog"

	"github.com/rollguard/rollguard/configs"
)

// statusView is what status templates see: the incident's fields plus
// NextUpdate, the status interval as text ("15m").
type statusView struct {
	*Incident
	NextUpdate string
}

// renderStatus renders the internal and customer texts. A template that
// fails (a reload can bring a bad one past validation only by a bug) falls
// back to the default, so a status update is never lost.
func renderStatus(t configs.StatusTemplates, inc *Incident, interval configs.Duration, log hclog.Logger) (internal, customer string) {
	view := statusView{Incident: inc, NextUpdate: interval.String()}
	render := func(name, text, fallback string) string {
		out, err := execute(name, text, view)
		if err != nil {
			log.Error("status template failed; using the default", "template", name, "error", err)
			out, _ = execute(name, fallback, view)
		}
		return out
	}
	return render("internal", t.Internal, configs.DefaultInternalTemplate),
		render("customer", t.Customer, configs.DefaultCustomerTemplate)
}

func execute(name, text string, data any) (string, error) {
	tp, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := tp.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}
