package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rollguard/rollguard/cluster/agg"
	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/sources"
)

// recorder is a Shipper's publish function: it records what it is given
// and fails while down.
type recorder struct {
	down bool
	ids  []string
	data [][]detector.Aggregate
}

func (f *recorder) publish(_ context.Context, guard string, m agg.Message) error {
	if f.down {
		return errors.New("nats: timeout")
	}
	g, _, aggs, err := agg.Decode(m.Data)
	if err != nil || g != guard {
		return errors.New("undecodable")
	}
	f.ids = append(f.ids, m.ID(guard))
	f.data = append(f.data, aggs)
	return nil
}

const testConfig = `
global:
  evaluation_interval: 100ms
guards:
  - name: checkout
    service: checkout
    signals:
      - name: errors
  - name: cart
    service: cart
    signals:
      - name: errors
`

func testShipper(t *testing.T) (*Shipper, *recorder, *time.Time) {
	t.Helper()
	cfg, err := configs.Parse([]byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	f := &recorder{}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	s := NewShipper(detector.NewAggregator(cfg, detector.AggregatorOptions{}), ShipperOptions{
		Publish:  f.publish,
		Interval: func() time.Duration { return time.Duration(cfg.Global.EvaluationInterval) },
		ID:       func() string { return "edge-1" },
	})
	s.now = func() time.Time { return now }
	return s, f, &now
}

func traffic(service string, n float64) []sources.Sample {
	return []sources.Sample{{Metric: "http.server.request.duration", Kind: sources.KindHistogram, Count: n,
		Labels: sources.Labels{{Name: "service.name", Value: service}, {Name: "service.version", Value: "v1"}}}}
}

// TestShipperRetriesInOrder: one message per guard per tick; what NATS did
// not take is sent on a later tick, in order, under its first id; an empty
// tick sends nothing.
func TestShipperRetriesInOrder(t *testing.T) {
	s, f, now := testShipper(t)
	ctx := context.Background()
	_ = s.agg.Append(append(traffic("checkout", 10), traffic("cart", 5)...))
	f.down = true
	s.tick()
	s.ship(ctx)
	if len(s.backlog) != 2 || testutil.ToFloat64(s.metrics.failures) != 1 {
		t.Fatalf("backlog %d, failures %v", len(s.backlog), testutil.ToFloat64(s.metrics.failures))
	}
	*now = now.Add(10 * time.Second)
	_ = s.agg.Append(traffic("checkout", 20))
	f.down = false
	s.tick()
	s.ship(ctx)
	want := []string{"edge-1/cart/1795608000000", "edge-1/checkout/1795608000000", "edge-1/checkout/1795608010000"}
	if len(f.ids) != 3 || f.ids[0] != want[0] || f.ids[1] != want[1] || f.ids[2] != want[2] {
		t.Fatalf("published %q, want %q", f.ids, want)
	}
	if f.data[1][0].Total != 10 || f.data[2][0].Total != 20 || len(s.backlog) != 0 {
		t.Errorf("data %+v, backlog %d", f.data, len(s.backlog))
	}
	*now = now.Add(10 * time.Second)
	s.tick()
	s.ship(ctx)
	if len(f.ids) != 3 {
		t.Errorf("an empty tick published %d messages", len(f.ids)-3)
	}
}

// TestShipperBacklogBounds: while NATS is away the backlog keeps at most
// maxBacklog messages and none older than the deduplication window; what
// it gives up is counted. Nothing is attempted while disconnected.
func TestShipperBacklogBounds(t *testing.T) {
	s, f, now := testShipper(t)
	connected := false
	attempts := 0
	s.connected = func() bool { return connected }
	s.publish = func(ctx context.Context, g string, m agg.Message) error { attempts++; return f.publish(ctx, g, m) }
	for i := 0; i < maxBacklog+5; i++ {
		_ = s.agg.Append(traffic("checkout", 1))
		s.tick()
		s.ship(context.Background())
		*now = now.Add(100 * time.Millisecond)
	}
	if attempts != 0 || len(s.backlog) != maxBacklog || testutil.ToFloat64(s.metrics.dropped.WithLabelValues("backlog_full")) != 5 {
		t.Fatalf("attempts %d, backlog %d, dropped %v", attempts, len(s.backlog),
			testutil.ToFloat64(s.metrics.dropped.WithLabelValues("backlog_full")))
	}
	*now = now.Add(agg.MaxAge - 50*time.Second) // the first 500 (50 s of ticks) are now too old
	s.tick()
	if got := testutil.ToFloat64(s.metrics.dropped.WithLabelValues("expired")); got != 500 || len(s.backlog) != maxBacklog-500 {
		t.Fatalf("expired %v, backlog %d", got, len(s.backlog))
	}
	connected = true
	s.ship(context.Background())
	if len(f.ids) != maxBacklog-500 || testutil.ToFloat64(s.metrics.backlog) != 0 {
		t.Errorf("published %d, backlog gauge %v", len(f.ids), testutil.ToFloat64(s.metrics.backlog))
	}
}

// TestShipperRunStops: Run ticks, and on cancel ships the last partial
// tick and returns.
func TestShipperRunStops(t *testing.T) {
	s, f, _ := testShipper(t)
	_ = s.agg.Append(traffic("checkout", 3))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil || len(f.ids) != 1 {
			t.Errorf("Run: %v, published %d", err, len(f.ids))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return on cancel")
	}
}
