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
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/actions/actuator"
)

// actuateOptions are the flags of `rollguard actuate`.
type actuateOptions struct {
	nats                              natsClient
	log                               logFlags
	name, durable                     string
	actions, services, keys, keyFiles []string
	driver                            string
	execCommand                       []string
	execTimeout                       time.Duration
	webhookURL                        string
	webhookHeaders                    []string
	webhookTimeout                    time.Duration
	webhookRetries                    int
	flagdFile, flagdMode              string
	signSeedFile                      string
}

// addActuateCommand registers `rollguard actuate` on app and returns the
// command and what runs it, until SIGINT or SIGTERM, once the flags are parsed.
func addActuateCommand(app *kingpin.Application) (*kingpin.CmdClause, func(stdout, stderr io.Writer) int) {
	cmd, o := actuateFlags(app)
	return cmd, func(_, stderr io.Writer) int {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runActuate(ctx, *o, stderr)
	}
}

func actuateFlags(app *kingpin.Application) (*kingpin.CmdClause, *actuateOptions) {
	var o actuateOptions
	cmd := app.Command("actuate", "Run a reference actuator: consume rollguard's signed commands from NATS JetStream, "+
		"verify them, act through a driver (exec, webhook or flagd) and publish the results.")
	o.nats.flags(cmd, actuator.DefaultPrefix, actuator.DefaultStream, "JetStream stream holding the commands.")
	cmd.Flag("name", "This actuator's name in its results (default: the durable name).").StringVar(&o.name)
	cmd.Flag("durable", "Durable consumer name, e.g. actuator-flagd; actuators sharing it share the work.").Required().StringVar(&o.durable)
	cmd.Flag("action", "An action to consume (repeat for several; default all): flag_kill, rollback, data_audit.").StringsVar(&o.actions)
	cmd.Flag("service", "A service whose commands to consume (repeat for several; default all).").StringsVar(&o.services)
	cmd.Flag("verify.key", "A trusted public key (\"U…\") that signs commands (repeatable).").StringsVar(&o.keys)
	cmd.Flag("verify.key-file", "A file with a trusted public key, like rollguard's <storage.path>/signing.pub (repeatable).").StringsVar(&o.keyFiles)
	cmd.Flag("sign.seed-file", "The nkey user seed (\"SU…\", as `nk -gen user` writes) this actuator signs its results with; "+
		"list its public key in rollguard's playbook.signing.result_keys. Default: a key made for this process, logged at start.").StringVar(&o.signSeedFile)
	cmd.Flag("driver", "How to act: exec, webhook or flagd.").Required().EnumVar(&o.driver, "exec", "webhook", "flagd")
	cmd.Flag("exec.command", "exec: the program and its arguments, one per flag (no shell).").StringsVar(&o.execCommand)
	cmd.Flag("exec.timeout", "exec: how long the program may run.").Default("1m").DurationVar(&o.execTimeout)
	cmd.Flag("webhook.url", "webhook: the URL to POST each command to.").StringVar(&o.webhookURL)
	cmd.Flag("webhook.header", "webhook: a header \"Name: value\" to send (repeatable).").StringsVar(&o.webhookHeaders)
	cmd.Flag("webhook.timeout", "webhook: timeout of each attempt.").Default("10s").DurationVar(&o.webhookTimeout)
	cmd.Flag("webhook.retries", "webhook: retries after a network error, 5xx or 429.").Default("3").IntVar(&o.webhookRetries)
	cmd.Flag("flagd.file", "flagd: the flag-definition file to edit.").StringVar(&o.flagdFile)
	cmd.Flag("flagd.mode", "flagd: off-variant (serve the off variant to everyone) or disabled (state DISABLED).").
		Default(actuator.FlagdOffVariant).EnumVar(&o.flagdMode, actuator.FlagdOffVariant, actuator.FlagdDisabled)
	o.log.flags(cmd)
	return cmd, &o
}

// runActuate runs the actuator until ctx ends. Bad flags exit 2 before
// anything connects; a failure to connect or consume exits 1.
func runActuate(ctx context.Context, o actuateOptions, stderr io.Writer) int {
	verifier, driver, err := o.build()
	if err != nil {
		fmt.Fprintf(stderr, "rollguard actuate: %v\n", err)
		return 2
	}
	var signer *actions.Signer // nil: the actuator makes a key for this process and says so
	if o.signSeedFile != "" {
		if signer, err = actions.LoadSigner(o.signSeedFile, ""); err != nil {
			fmt.Fprintf(stderr, "rollguard actuate: --sign.seed-file: %v\n", err)
			return 2
		}
	}
	log := newLogger(o.log.level, o.log.format, stderr).Named("actuate")
	if signer != nil {
		log.Info("results are signed", "key", signer.PublicKey())
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
	err = actuator.Run(ctx, actuator.Options{JS: js, Stream: o.nats.stream, Subjects: actions.Subjects{Prefix: o.nats.prefix},
		Durable: o.durable, Actions: o.actions, Services: o.services, Verifier: verifier, Signer: signer, Name: o.name, Logger: log}, driver)
	if err != nil {
		log.Error("stopped with error", "error", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// build checks the flags and makes the verifier and the driver.
func (o actuateOptions) build() (*actions.Verifier, actuator.Driver, error) {
	if strings.TrimSpace(o.durable) == "" {
		return nil, nil, errors.New("--durable is empty: name the consumer, e.g. --durable=actuator-flagd")
	}
	verifier, err := trustedVerifier(o.keys, o.keyFiles, "an actuator acts only on commands it can verify")
	if err != nil {
		return nil, nil, err
	}
	var d actuator.Driver
	switch o.driver {
	case "exec":
		if len(o.execCommand) == 0 {
			return nil, nil, errors.New("--driver=exec needs --exec.command (once per argument: --exec.command=/usr/local/bin/kill-flag --exec.command=--env=prod)")
		}
		d, err = actuator.NewExec(o.execCommand, o.execTimeout)
	case "webhook":
		if o.webhookURL == "" {
			return nil, nil, errors.New("--driver=webhook needs --webhook.url")
		}
		header := http.Header{}
		for _, h := range o.webhookHeaders {
			name, value, ok := strings.Cut(h, ":")
			name = strings.TrimSpace(name)
			if !ok || name == "" || strings.ContainsAny(name, " \t") {
				return nil, nil, fmt.Errorf("--webhook.header %q is not \"Name: value\"", h)
			}
			header.Add(textproto.CanonicalMIMEHeaderKey(name), strings.TrimSpace(value))
		}
		retries := o.webhookRetries
		if retries <= 0 {
			retries = -1 // WebhookOptions reads 0 as "the default"; here it means none
		}
		d, err = actuator.NewWebhook(actuator.WebhookOptions{URL: o.webhookURL, Header: header,
			Timeout: o.webhookTimeout, Retries: retries})
	case "flagd":
		if o.flagdFile == "" {
			return nil, nil, errors.New("--driver=flagd needs --flagd.file")
		}
		if _, serr := os.Stat(o.flagdFile); serr != nil {
			return nil, nil, fmt.Errorf("--flagd.file: %w", serr)
		}
		d, err = actuator.NewFlagd(o.flagdFile, o.flagdMode)
	}
	if err != nil {
		return nil, nil, err
	}
	return verifier, d, nil
}
