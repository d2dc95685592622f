package main

import (
	"fmt"
	"io"

	"github.com/alecthomas/kingpin/v2"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/replay"
)

// replayOptions are the flags and arguments of `rollguard replay`.
type replayOptions struct {
	configFile string
	recordings []string
}

// addReplayCommand registers `rollguard replay` on app and returns the
// command and what runs it once the arguments are parsed.
func addReplayCommand(app *kingpin.Application) (*kingpin.CmdClause, func(stdout, stderr io.Writer) int) {
	var o replayOptions
	cmd := app.Command("replay", "Replay recorded OTLP/JSON exports through the guards on a virtual clock and print the verdict timeline and the commands that would have gone out (nothing is published).")
	cmd.Flag("config.file", "Configuration file (its guards and global settings are used).").Default("rollguard.yml").StringVar(&o.configFile)
	cmd.Arg("recording", "Recordings: JSON lines, each one OTLP/JSON ExportMetricsServiceRequest, in time order. Each is replayed on its own.").Required().ExistingFilesVar(&o.recordings)
	return cmd, func(stdout, stderr io.Writer) int { return runReplay(o, stdout, stderr) }
}

func runReplay(o replayOptions, stdout, stderr io.Writer) int {
	cfg, err := configs.Load(o.configFile)
	if err != nil {
		fmt.Fprintf(stderr, "rollguard: %s: %v\n", o.configFile, err)
		return 1
	}
	for _, g := range cfg.Guards {
		for _, s := range g.Signals {
			if s.Query != nil {
				fmt.Fprintf(stderr, "rollguard: guard %s signal %s is defined by a PromQL query: a replay has no Prometheus to ask, so it gets no data\n", g.Name, s.Name)
			}
		}
	}
	for i, file := range o.recordings {
		if len(o.recordings) > 1 {
			if i > 0 {
				fmt.Fprintln(stdout)
			}
			fmt.Fprintf(stdout, "==> %s <==\n", file)
		}
		if _, err := replay.File(cfg, file, stdout, stderr); err != nil {
			fmt.Fprintf(stderr, "rollguard: replay: %v\n", err)
			return 1
		}
	}
	return 0
}
