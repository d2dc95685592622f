package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/notify"
)

// notifyOptions are the flags of `rollguard notify`.
type notifyOptions struct {
	nats                                       natsClient
	log                                        logFlags
	durable, deliver                           string
	services, keys, keyFiles                   []string
	driver, webURL                             string
	webhookURL                                 string
	headers                                    []string
	timeout                                    time.Duration
	retries                                    int
	slackURL                                   string
	pagerDutyKey, pagerDutyURL                 string
	alertmanagerURLs                           []string
	grafanaURL, grafanaToken, grafanaDashboard string
	grafanaPanel                               int64
	resend                                     time.Duration
}

// addNotifyCommand registers `rollguard notify` on app and returns the
// command and what runs it, until SIGINT or SIGTERM, once the flags are parsed.
func addNotifyCommand(app *kingpin.Application) (*kingpin.CmdClause, func(stdout, stderr io.Writer) int) {
	cmd, o := notifyFlags(app)
	return cmd, func(_, stderr io.Writer) int {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runNotify(ctx, *o, stderr)
	}
}

func notifyFlags(app *kingpin.Application) (*kingpin.CmdClause, *notifyOptions) {
	var o notifyOptions
	cmd := app.Command("notify", "Deliver rollguard's incident status updates and incident events from NATS JetStream "+
		"to a webhook, Slack, PagerDuty, Alertmanager or Grafana annotations, catching up after downtime without posting twice.")
	o.nats.flags(cmd, notify.DefaultPrefix, notify.DefaultStream, "JetStream stream holding the status updates and incident events.")
	cmd.Flag("durable", "Durable consumer name, e.g. notify-slack; notifiers sharing it share the work.").Required().StringVar(&o.durable)
	cmd.Flag("deliver", "Where a consumer created now starts: new (the next event) or all (the stream's history, up to 30 days: "+
		"old incidents posted, paged and resolved again). An existing consumer keeps its place, so a notifier that was down catches up either way.").
		Default("new").EnumVar(&o.deliver, "new", "all")
	cmd.Flag("service", "A service to notify about (repeat for several; default all).").StringsVar(&o.services)
	cmd.Flag("verify.key", "A trusted public key (\"U…\") rollguard signs with (repeatable).").StringsVar(&o.keys)
	cmd.Flag("verify.key-file", "A file with a trusted public key, like rollguard's <storage.path>/signing.pub (repeatable).").StringsVar(&o.keyFiles)
	cmd.Flag("driver", "Where to deliver: webhook, slack, pagerduty, alertmanager or grafana (annotations).").Required().
		EnumVar(&o.driver, "webhook", "slack", "pagerduty", "alertmanager", "grafana")
	cmd.Flag("web.url", "rollguard's web UI as people reach it, e.g. https://rollguard.example.com: messages link its incident pages.").StringVar(&o.webURL)
	cmd.Flag("webhook.url", "webhook: the URL to POST each event's CloudEvent JSON to.").StringVar(&o.webhookURL)
	cmd.Flag("http.header", "A header \"Name: value\" to send with every request (repeatable).").StringsVar(&o.headers)
	cmd.Flag("http.timeout", "Timeout of each request.").Default("10s").DurationVar(&o.timeout)
	cmd.Flag("http.retries", "Retries after a network error, 5xx or 429, before the event is left for redelivery.").Default("3").IntVar(&o.retries)
	cmd.Flag("slack.url", "slack: the incoming-webhook URL (a secret: prefer the environment variable).").
		Envar("ROLLGUARD_SLACK_URL").StringVar(&o.slackURL)
	cmd.Flag("pagerduty.routing-key", "pagerduty: the Events API v2 integration key (a secret: prefer the environment variable).").
		Envar("ROLLGUARD_PAGERDUTY_ROUTING_KEY").StringVar(&o.pagerDutyKey)
	cmd.Flag("pagerduty.url", "pagerduty: the Events API v2 endpoint.").Default(notify.PagerDutyURL).StringVar(&o.pagerDutyURL)
	cmd.Flag("alertmanager.url", "alertmanager: an Alertmanager's base URL, e.g. http://alertmanager:9093 (repeat for each of an HA set).").
		StringsVar(&o.alertmanagerURLs)
	cmd.Flag("alertmanager.resend-interval", "alertmanager: how often open incidents' alerts are sent again.").
		Default(notify.DefaultResendInterval.String()).DurationVar(&o.resend)
	cmd.Flag("grafana.url", "grafana: Grafana's base URL, e.g. http://grafana:3000.").StringVar(&o.grafanaURL)
	cmd.Flag("grafana.token", "grafana: a service account token with annotations:write (a secret: prefer the environment variable).").
		Envar("ROLLGUARD_GRAFANA_TOKEN").StringVar(&o.grafanaToken)
	cmd.Flag("grafana.dashboard-uid", "grafana: the dashboard to annotate (default: organization annotations, shown where a query asks for tag rollguard).").
		StringVar(&o.grafanaDashboard)
	cmd.Flag("grafana.panel-id", "grafana: the panel to annotate on that dashboard (default all).").Int64Var(&o.grafanaPanel)
	o.log.flags(cmd)
	return cmd, &o
}

// runNotify runs the notifier until ctx ends. Bad flags exit 2 before
// anything connects; a failure to connect or consume exits 1.
func runNotify(ctx context.Context, o notifyOptions, stderr io.Writer) int {
	log := newLogger(o.log.level, o.log.format, stderr).Named("notify")
	verifier, driver, err := o.build(log)
	if err != nil {
		fmt.Fprintf(stderr, "rollguard notify: %v\n", err)
		return 2
	}
	nc, err := o.nats.connect(log)
	if err != nil {
		log.Error("start failed", "error", err)
		return 1
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Error("start failed", "error", err)
		return 1
	}
	err = notify.Run(ctx, notify.Options{JS: js, Stream: o.nats.stream, Subjects: actions.Subjects{Prefix: o.nats.prefix},
		Durable: o.durable, Services: o.services, DeliverNew: o.deliver == "new", Verifier: verifier, Logger: log}, driver)
	if err != nil {
		log.Error("stopped with error", "error", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// build checks the flags and makes the verifier and the driver.
func (o notifyOptions) build(log hclog.Logger) (*actions.Verifier, notify.Driver, error) {
	if strings.TrimSpace(o.durable) == "" {
		return nil, nil, errors.New("--durable is empty: name the consumer, e.g. --durable=notify-slack")
	}
	verifier, err := trustedVerifier(o.keys, o.keyFiles, "a notifier delivers only what rollguard signed")
	if err != nil {
		return nil, nil, err
	}
	header := http.Header{}
	for _, h := range o.headers {
		name, value, ok := strings.Cut(h, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, nil, fmt.Errorf("--http.header %q is not \"Name: value\"", h)
		}
		header.Add(textproto.CanonicalMIMEHeaderKey(name), strings.TrimSpace(value))
	}
	retries := o.retries
	if retries <= 0 {
		retries = -1 // HTTPOptions reads 0 as "the default"; here it means none
	}
	h := notify.HTTPOptions{Header: header, Timeout: o.timeout, Retries: retries}
	var d notify.Driver
	switch o.driver {
	case "webhook":
		if o.webhookURL == "" {
			return nil, nil, errors.New("--driver=webhook needs --webhook.url")
		}
		h.URL = o.webhookURL
		d, err = notify.NewWebhook(h)
	case "slack":
		if o.slackURL == "" {
			return nil, nil, errors.New("--driver=slack needs --slack.url or ROLLGUARD_SLACK_URL (the incoming webhook's URL)")
		}
		h.URL = o.slackURL
		d, err = notify.NewSlack(h, o.webURL)
	case "pagerduty":
		if o.pagerDutyKey == "" {
			return nil, nil, errors.New("--driver=pagerduty needs --pagerduty.routing-key or ROLLGUARD_PAGERDUTY_ROUTING_KEY (the Events API v2 integration key)")
		}
		h.URL = o.pagerDutyURL
		d, err = notify.NewPagerDuty(h, o.pagerDutyKey, o.webURL)
	case "alertmanager":
		if len(o.alertmanagerURLs) == 0 {
			return nil, nil, errors.New("--driver=alertmanager needs --alertmanager.url (e.g. http://alertmanager:9093)")
		}
		d, err = notify.NewAlertmanager(notify.AlertmanagerOptions{URLs: o.alertmanagerURLs, HTTP: h, WebURL: o.webURL,
			ResendInterval: o.resend, Logger: log})
	case "grafana":
		if o.grafanaURL == "" {
			return nil, nil, errors.New("--driver=grafana needs --grafana.url (e.g. http://grafana:3000)")
		}
		d, err = notify.NewGrafana(notify.GrafanaOptions{URL: o.grafanaURL, Token: o.grafanaToken, DashboardUID: o.grafanaDashboard,
			PanelID: o.grafanaPanel, HTTP: h, WebURL: o.webURL})
	default:
		return nil, nil, fmt.Errorf("--driver=%q is not webhook, slack, pagerduty, alertmanager or grafana", o.driver)
	}
	if err != nil {
		return nil, nil, err
	}
	return verifier, d, nil
}
