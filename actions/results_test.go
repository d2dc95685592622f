package actions

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rollguard/rollguard/actions/wire"
	"github.com/rollguard/rollguard/detector"
	"github.com/rollguard/rollguard/internal/poll"
)

// resultFeed runs ConsumeResults on the harness's stream, with the
// playbook's signature check, and hands each believed result to the test.
func resultFeed(t *testing.T, h *harness) (<-chan ResultData, func() []error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan ResultData, 16)
	var mu sync.Mutex
	var errs []error
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := ConsumeResults(ctx, h.js, "ROLLGUARD", "rollguard-playbook", Subjects{Prefix: "rollguard"}, h.p.CheckResult,
			func(ctx context.Context, r ResultData) error {
				select {
				case out <- r:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}, func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() })
		if err != nil {
			t.Errorf("ConsumeResults: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return out, func() []error { mu.Lock(); defer mu.Unlock(); return append([]error(nil), errs...) }
}

// publishResult publishes a result as an actuator does, signed (and its
// id keyed) by signer; nil publishes it unsigned.
func publishResult(t *testing.T, h *harness, signer *Signer, r ResultData, edit func(m *Message)) {
	t.Helper()
	ev, err := NewEvent(r.CommandID+"/result/"+r.Actuator, ResultType(r.Action), r.Service, h.now, r)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(ev)
	m := Message{Subject: Subjects{Prefix: "rollguard"}.Result(r.Action, r.Service), ID: ev.ID, Data: b}
	if signer != nil {
		if err := signer.Sign(&m); err != nil {
			t.Fatal(err)
		}
	}
	if edit != nil {
		edit(&m)
	}
	if err := (JetStreamPublisher{JS: h.js, Signer: signer}).Publish(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

// TestPlaybookResultsMustBeSigned: with result keys configured, a forged
// ok — unsigned, signed by a stranger, or altered after signing — is
// ignored and counted by reason, and the trusted actuator's real result
// (failed) is the one that moves the incident. Its twin, with no key
// configured, believes an unsigned result and counts it as unverified.
func TestPlaybookResultsMustBeSigned(t *testing.T) {
	actuatorKey, err := wire.NewEphemeralSigner()
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := wire.NewEphemeralSigner()
	if err != nil {
		t.Fatal(err)
	}
	for _, trusted := range []bool{true, false} {
		name := map[bool]string{true: "trusted keys", false: "no keys"}[trusted]
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, "", detector.Deployment{})
			if trusted {
				v, err := NewVerifier(actuatorKey.PublicKey())
				if err != nil {
					t.Fatal(err)
				}
				h.p.SetResultKeys(v)
			}
			results, errs := resultFeed(t, h)
			h.verdict(detector.StateRegressed, evidence(detector.StateRegressed, 0.05, 0.01))
			h.wantState(StateContaining)
			kill := CommandID(h.dep.ID, ActionFlagKill, "new-flow")
			forged := ResultData{CommandID: kill, Action: ActionFlagKill, Service: "checkout", Status: ResultOK,
				Detail: "flag killed (not really)", Actuator: "forger", At: h.now}

			publishResult(t, h, nil, forged, nil)
			if trusted {
				publishResult(t, h, stranger, forged, nil)
				publishResult(t, h, actuatorKey, forged, func(m *Message) {
					m.Data = []byte(strings.Replace(string(m.Data), "forger", "flagd", 1))
					m.ID += "/altered"
				})
			}
			real := ResultData{CommandID: kill, Action: ActionFlagKill, Service: "checkout", Status: ResultFailed,
				Detail: "flag service down", Actuator: "flagd", At: h.now}
			publishResult(t, h, actuatorKey, real, nil)

			var got []ResultData
			wantBelieved := 1
			if !trusted {
				wantBelieved = 2 // the unsigned ok, then the real one
			}
			poll.Until(t, 10*time.Second, func() error {
				select {
				case r := <-results:
					got = append(got, r)
				default:
				}
				if len(got) < wantBelieved {
					return errors.New("results not all read yet")
				}
				return nil
			})
			for _, r := range got {
				h.p.step(func(m *Model) Effects { return m.Result(r, h.now) })
			}
			h.flush()
			inc := h.incident()
			c := inc.Commands[0]
			if trusted {
				if len(got) != 1 || got[0].Actuator != "flagd" {
					t.Fatalf("believed %+v, want only flagd's real result", got)
				}
				// The real failure moves the incident on to the rollback.
				h.wantState(StateRollingBack)
				if c.Result == nil || c.Result.Actuator != "flagd" || c.Status != CommandFailed {
					t.Fatalf("flag kill %+v, want flagd's failed result", c)
				}
				for reason, want := range map[string]float64{ResultRejectUnsigned: 1, ResultRejectUntrustedKey: 1, ResultRejectBadSignature: 1} {
					if n := testutil.ToFloat64(h.p.metrics.rejected.WithLabelValues(reason)); n != want {
						t.Errorf("rejected{reason=%q} = %v, want %v", reason, n, want)
					}
				}
				if e := errs(); len(e) != 3 || !strings.Contains(e[0].Error(), "not signed") || !strings.Contains(e[1].Error(), stranger.PublicKey()) {
					t.Errorf("errors reported %v, want the three refusals, each saying why", e)
				}
				if n := testutil.ToFloat64(h.p.metrics.unverified); n != 0 {
					t.Errorf("unverified = %v, want 0", n)
				}
				return
			}
			// No key: the unsigned ok is believed (first final result wins).
			h.wantState(StateVerifying)
			if c.Result == nil || c.Result.Actuator != "forger" {
				t.Fatalf("flag kill %+v, want the first result believed", c)
			}
			if n := testutil.ToFloat64(h.p.metrics.unverified); n != 2 {
				t.Errorf("unverified = %v, want 2", n)
			}
		})
	}
}
