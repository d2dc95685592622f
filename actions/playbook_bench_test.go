package actions

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollguard/rollguard/detector"
)

// BenchmarkVerdictToJetStream measures the path from a regressed verdict to
// its flag kill (with the incident event and status update) stored in
// JetStream: the decision, signing, the fsync'd outbox, the publishes with
// their acks, and saving the incident to KV. One op is one new incident.
func BenchmarkVerdictToJetStream(b *testing.B) {
	js, _ := startJetStream(b)
	store, err := NewKVStore(context.Background(), js, "ROLLGUARD_INCIDENTS")
	if err != nil {
		b.Fatal(err)
	}
	ob, err := OpenOutbox(filepath.Join(b.TempDir(), "outbox"))
	if err != nil {
		b.Fatal(err)
	}
	defer ob.Close()
	h := newHarnessOn(b, js, "budget: {max_commands: 1000000000, window: 1h}", detector.Deployment{}, store)
	h.p.o.Outbox = ob
	evs := evidence(detector.StateRegressed, 0.05, 0.01)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d := h.dep
		d.ID = fmt.Sprintf("d-%012x", i)
		h.p.step(func(m *Model) Effects {
			return m.Verdict(detector.GuardVerdict{Guard: "checkout", Deployment: d, State: detector.StateRegressed, At: h.now, Signals: evs}, h.now)
		})
		h.p.flush(context.Background())
		h.p.persist(context.Background())
	}
	b.StopTimer()
	if ob.Len() != 0 {
		b.Fatalf("%d messages left in the outbox", ob.Len())
	}
	st, _ := js.Stream(context.Background(), "ROLLGUARD")
	if info, err := st.Info(context.Background(), jetstream.WithSubjectFilter("rollguard.cmd.>")); err != nil || len(info.State.Subjects) == 0 {
		b.Fatalf("no command in the stream: %v", err)
	}
}
