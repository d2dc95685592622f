package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"

	"github.com/rollguard/rollguard/configs"
)

// Start-up waits for NATS instead of giving up on it: replicas and
// sidecars started at once on a fresh cluster (a StatefulSet with
// podManagementPolicy: Parallel) race to create the same streams and
// buckets, and JetStream lets some of those creations time out while its
// meta leader settles; a server that comes up after rollguard is refused
// at first. Each creation is tried again, from startupFirstWait doubling
// to startupMaxWait with jitter, until it succeeds or the process is
// stopped.
const (
	startupFirstWait = 250 * time.Millisecond
	startupMaxWait   = 5 * time.Second
	// startupAttempt bounds one attempt (JetStream's own default API
	// timeout): a creation racing another is often never answered although
	// it took effect, and sending it again is answered at once.
	startupAttempt = 5 * time.Second
)

// errGiveUp marks an error that retrying cannot cure (wrong credentials,
// a certificate not trusted): start-up fails with it at once.
type errGiveUp struct{ err error }

func (e errGiveUp) Error() string { return e.err.Error() }
func (e errGiveUp) Unwrap() error { return e.err }

// untilReady calls create until it succeeds, fails with errGiveUp, or ctx
// ends, logging each failed attempt; what names it in the log.
func untilReady[T any](ctx context.Context, log hclog.Logger, what string, create func(context.Context) (T, error)) (T, error) {
	wait := startupFirstWait
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, startupAttempt)
		v, err := create(actx)
		cancel()
		var giveUp errGiveUp
		switch {
		case err == nil:
			if attempt > 1 {
				log.Info("ready after retries", "waited_for", what, "attempts", attempt)
			}
			return v, nil
		case errors.As(err, &giveUp):
			return v, giveUp.err
		case ctx.Err() != nil:
			return v, fmt.Errorf("stopped while waiting for %s: %w", what, err)
		}
		jittered := wait/2 + rand.N(wait/2+1)
		log.Warn("nats not ready; will retry", "waiting_for", what, "attempt", attempt, "retry_in", jittered.Round(time.Millisecond), "error", err)
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("stopped while waiting for %s: %w", what, err)
		case <-time.After(jittered):
		}
		wait = min(2*wait, startupMaxWait)
	}
}

// connectNATSUntilReady connects to url, waiting for a server that cannot
// be reached yet; a server that refuses the credentials or whose
// certificate is not trusted fails start-up at once.
func connectNATSUntilReady(ctx context.Context, url string, c configs.NATSConfig, log hclog.Logger) (*nats.Conn, error) {
	return untilReady(ctx, log, "nats server "+url, func(context.Context) (*nats.Conn, error) {
		nc, err := connectNATS(url, c, log)
		var ne net.Error
		if err != nil && !errors.Is(err, nats.ErrNoServers) && !errors.As(err, &ne) {
			return nil, errGiveUp{err}
		}
		return nc, err
	})
}
