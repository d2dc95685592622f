package agg_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollguard/rollguard/cluster/agg"
	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/internal/natstest"
)

// fanInConfig guards 100 services with the realistic guard's three signals.
func fanInConfig(b *testing.B, guards int) *configs.Config {
	b.Helper()
	var sb strings.Builder
	sb.WriteString("guards:\n")
	for i := 0; i < guards; i++ {
		fmt.Fprintf(&sb, `  - name: g%d
    service: s%d
    signals:
      - name: errors
      - name: latency
        type: latency
        quantiles: [0.99]
      - name: writes
        type: data_integrity
        metric: db_failed_writes_total
        total_metric: db_writes_total
`, i, i)
	}
	cfg, err := configs.Parse([]byte(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	return cfg
}

// fanInEngine is a replica's engine with a deployment under way for every
// guard, and each guard's tick message from one sidecar.
func fanInEngine(b *testing.B, guards int) (*detector.Engine, [][]byte) {
	b.Helper()
	e := detector.NewEngine(fanInConfig(b, guards), detector.EngineOptions{})
	msgs := make([][]byte, guards)
	for i := range msgs {
		if _, err := e.Announce(detector.Deployment{Service: fmt.Sprintf("s%d", i), Version: "v1.42.0", PreviousVersion: "v1.41.0"}); err != nil {
			b.Fatal(err)
		}
		g := fmt.Sprintf("g%d", i)
		m, err := agg.Encode(g, tick, realistic(g))
		if err != nil {
			b.Fatal(err)
		}
		msgs[i] = m
	}
	return e, msgs
}

// BenchmarkFanIn is a replica's cost per aggregate message (one guard's
// tick from one sidecar: 3 signals x 2 versions, latency with 15 bounds):
// decode and merge into the engine, across 100 guards with deployments
// under way. (Evaluating the guards is per tick, not per message: see
// BenchmarkEvaluate.)
func BenchmarkFanIn(b *testing.B) {
	e, msgs := fanInEngine(b, 100)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_, _, aggs, err := agg.Decode(msgs[i%len(msgs)])
		if err != nil {
			b.Fatal(err)
		}
		if err := e.AppendAggregates(aggs); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkFanInNATS adds the delivery: messages published into the
// aggregates stream of an in-process NATS server and consumed by a
// durable consumer into the engine, as a central replica does.
func BenchmarkFanInNATS(b *testing.B) {
	e, msgs := fanInEngine(b, 100)
	ns := natstest.Start(b)
	js := natstest.JetStream(b, ns.ClientURL())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := agg.EnsureStream(ctx, js, "ROLLGUARD_AGG", "rollguard"); err != nil {
		b.Fatal(err)
	}
	got := make(chan struct{}, 1<<16)
	done := make(chan error, 1)
	go func() {
		done <- agg.Consume(ctx, js, "ROLLGUARD_AGG", "bench", "rollguard", func(a []detector.Aggregate) error {
			err := e.AppendAggregates(a)
			got <- struct{}{}
			return err
		}, func(err error) { b.Error(err) })
	}()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		g := fmt.Sprintf("g%d", i%len(msgs))
		m := agg.Message{Sidecar: "bench", At: tick.Add(time.Duration(i) * time.Millisecond), Data: msgs[i%len(msgs)]}
		// Published without waiting for each ack, as many sidecars at once would.
		msg := nats.NewMsg(agg.Subject("rollguard", g))
		msg.Data = m.Data
		msg.Header.Set(jetstream.MsgIDHeader, m.ID(g))
		if _, err := js.PublishMsgAsync(msg); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	for i := 0; i < b.N; i++ {
		select {
		case <-got:
		case <-time.After(30 * time.Second):
			b.Fatalf("%d of %d messages consumed", i, b.N)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	cancel()
	<-done
}

// BenchmarkEvaluate is one tick of a replica owning 100 guards, each with a
// deployment under way and a tick of two sidecars' aggregates to test.
func BenchmarkEvaluate(b *testing.B) {
	e, msgs := fanInEngine(b, 100)
	decoded := make([][]detector.Aggregate, len(msgs))
	for i, m := range msgs {
		_, _, aggs, err := agg.Decode(m)
		if err != nil {
			b.Fatal(err)
		}
		decoded[i] = aggs
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for _, a := range decoded {
			_ = e.AppendAggregates(a)
			_ = e.AppendAggregates(a)
		}
		b.StartTimer()
		e.Evaluate()
	}
}
