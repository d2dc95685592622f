package promql

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/internal/promtest"
)

// waitQueries waits until q has answered n queries.
func waitQueries(t *testing.T, q *promtest.QueryAPI, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for q.Queries() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d queries after 10s, want %d", q.Queries(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runPoller polls url every interval for a checkout deployment v1 → v2
// (four queries a round) until the test ends; cfg applies a changed
// interval.
func runPoller(t *testing.T, url, interval string) (p *Poller, cfg func(interval string) *configs.Config) {
	t.Helper()
	cfg = func(interval string) *configs.Config {
		c, err := configs.Parse([]byte(fmt.Sprintf(strings.Replace(pollConfig, "evaluation_interval: 10s", "evaluation_interval: "+interval, 1), url)))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	e := detector.NewEngine(cfg(interval), detector.EngineOptions{})
	if _, err := e.Announce(detector.Deployment{Service: "checkout", Version: "v2", PreviousVersion: "v1"}); err != nil {
		t.Fatal(err)
	}
	p = New(Config{Appender: e, Cohorts: e})
	if err := p.ApplyConfig(cfg(interval)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return p, cfg
}

// TestReloadChangesCadence: a reload that changes
// global.evaluation_interval changes how often the poller queries. It goes
// from 10ms to 20s; while a reference poller at 10ms runs 20 rounds,
// it runs no more than the round under way and the one already due.
func TestReloadChangesCadence(t *testing.T) {
	api, ref := promtest.NewQueryAPI(t), promtest.NewQueryAPI(t)
	p, cfg := runPoller(t, api.URL, "10ms")
	waitQueries(t, api, 2*4)
	if err := p.ApplyConfig(cfg("20s")); err != nil {
		t.Fatal(err)
	}
	after := api.Queries()
	runPoller(t, ref.URL, "10ms")
	waitQueries(t, ref, 20*4)
	if n := api.Queries() - after; n > 2*4 {
		t.Errorf("%d queries at the old 10ms interval after the change to 20s", n)
	}
}
