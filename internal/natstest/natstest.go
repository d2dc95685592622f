// Package natstest starts real NATS servers with JetStream for tests: the
// in-process server of nats-server, on loopback, storing in the test's
// temporary directory.
package natstest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Start runs a NATS server with JetStream on a free loopback port; configure
// may change its options (auth, TLS) before it starts. It is shut down when
// the test ends.
func Start(t testing.TB, configure ...func(*server.Options)) *server.Server {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true}
	for _, c := range configure {
		c(opts)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// JetStream connects to url (reconnecting for ever, as rollguard does) and
// returns a JetStream context; the connection closes when the test ends.
func JetStream(t testing.TB, url string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// StartCluster runs n NATS servers with JetStream routed into one cluster,
// for R3 streams and KV; each is shut down when the test ends (a test may
// shut one down earlier to see the others carry on).
func StartCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	var out []*server.Server
	// The route ports are picked free and then listened on by the servers:
	// another process may take one in between (seen on busy CI machines),
	// and that server never becomes ready. Such a cluster is thrown away
	// and a new one started on other ports.
	for try := 1; out == nil; try++ {
		out = startCluster(t, n)
		if out == nil && try == 3 {
			t.Fatal("nats cluster node not ready, three times")
		}
	}
	// JetStream is usable once the meta group has a leader.
	js := JetStream(t, out[0].ClientURL())
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("jetstream cluster not ready: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startCluster starts n routed servers; nil when one did not become ready
// (they are shut down).
func startCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ports[i] = freePort(t)
	}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	out := make([]*server.Server, n)
	for i := range out {
		opts := &server.Options{ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1, JetStream: true,
			StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "rollguard-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ","))}
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go ns.Start()
		out[i] = ns
		t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	}
	for _, ns := range out {
		if !ns.ReadyForConnections(20 * time.Second) {
			for _, o := range out {
				o.Shutdown()
			}
			return nil
		}
	}
	return out
}

// URLs lists the client URLs of servers, comma-separated as nats.Connect takes them.
func URLs(servers []*server.Server) string {
	var urls []string
	for _, ns := range servers {
		urls = append(urls, ns.ClientURL())
	}
	return strings.Join(urls, ",")
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
