// Command rollguard is the telemetry guardrail daemon and its tools. This
// package is wiring only: flags, the actor group, signals and reload.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
	"github.com/hashicorp/go-hclog"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/internal/logfmt"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() { os.Exit(rollguard(os.Args[1:], os.Stdout, os.Stderr)) }

func rollguard(args []string, stdout, stderr io.Writer) int {
	app := kingpin.New("rollguard", "Telemetry guardrail daemon: compares a deployment's new version against its baseline and publishes flag-kill commands on NATS when it is measurably worse.")
	app.UsageWriter(stderr)
	app.ErrorWriter(stderr)
	// kingpin would os.Exit after --help or --version; note it instead, so
	// that tests can call this function, and run nothing after help.
	helped := false
	app.Terminate(func(int) { helped = true })

	runCmd := app.Command("run", "Run the daemon.")
	var o daemonOptions
	runCmd.Flag("config.file", "Configuration file.").Default("rollguard.yml").StringVar(&o.ConfigFile)
	runCmd.Flag("storage.path", "Directory for state (the embedded NATS server's JetStream store).").Default("data/").StringVar(&o.StoragePath)
	runCmd.Flag("web.listen-address", "Address of the web server (API, /metrics, health).").Default(":9469").StringVar(&o.WebListenAddress)
	runCmd.Flag("cluster.replica-id", "This replica's id in a central cluster (overrides cluster.replica_id; a pod's name).").Envar("ROLLGUARD_REPLICA_ID").StringVar(&o.ReplicaID)
	logLevel := runCmd.Flag("log.level", "Only log messages at or above this level: debug, info, warn, error.").Default("info").Enum("debug", "info", "warn", "error")
	logFormat := runCmd.Flag("log.format", "Log format: logfmt (key=value text) or json.").Default("logfmt").Enum("logfmt", "json")

	checkCmd := app.Command("check", "Check resources.")
	checkConfigCmd := checkCmd.Command("config", "Check configuration files; print ok or the error.")
	checkFiles := checkConfigCmd.Arg("file", "Configuration files.").Required().ExistingFiles()

	deployCmd, deploy := addDeployCommand(app)
	replayCmd, replay := addReplayCommand(app)
	incidentCmds := addIncidentCommands(app)
	actuateCmd, actuate := addActuateCommand(app)
	notifyCmd, notifyRun := addNotifyCommand(app)
	demoCmd, demo := addDemoCommand(app)
	keygenCmd, keygen := addKeygenCommand(app)

	versionCmd := app.Command("version", "Print the version.")

	cmd, err := app.Parse(args)
	if helped {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "rollguard: %v (try --help)\n", err)
		return 2
	}
	if run, ok := incidentCmds[cmd]; ok {
		return run(stdout, stderr)
	}
	switch cmd {
	case runCmd.FullCommand():
		o.Logger = newLogger(*logLevel, *logFormat, stderr)
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		d, err := openDaemon(ctx, o) // a stop while it waits for NATS ends it
		if err != nil {
			o.Logger.Error("start failed", "error", err)
			return 1
		}
		if err := d.Run(ctx); err != nil {
			o.Logger.Error("stopped with error", "error", err)
			return 1
		}
		return 0
	case checkConfigCmd.FullCommand():
		code := 0
		for _, f := range *checkFiles {
			if _, err := configs.Load(f); err != nil {
				fmt.Fprintf(stderr, "%s: %v\n", f, err)
				code = 1
				continue
			}
			fmt.Fprintf(stdout, "%s: ok\n", f)
		}
		return code
	case deployCmd.FullCommand():
		if err := announce(*deploy, stdout); err != nil {
			fmt.Fprintf(stderr, "rollguard: %v\n", err)
			return 1
		}
		return 0
	case replayCmd.FullCommand():
		return replay(stdout, stderr)
	case actuateCmd.FullCommand():
		return actuate(stdout, stderr)
	case notifyCmd.FullCommand():
		return notifyRun(stdout, stderr)
	case demoCmd.FullCommand():
		return demo(stdout, stderr)
	case keygenCmd.FullCommand():
		return keygen(stdout, stderr)
	case versionCmd.FullCommand():
		fmt.Fprintf(stdout, "rollguard %s\n", version)
		return 0
	}
	return 2
}

// newLogger logs as --log.format says: logfmt (internal/logfmt) or
// hclog's JSON.
func newLogger(level, format string, w io.Writer) hclog.Logger {
	o := &hclog.LoggerOptions{
		Name:       "rollguard",
		Level:      hclog.LevelFromString(level),
		JSONFormat: format == "json",
		Output:     w,
	}
	if format == "logfmt" {
		return logfmt.New(o)
	}
	return hclog.New(o)
}
