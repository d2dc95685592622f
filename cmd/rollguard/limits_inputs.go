package main

import (
	"crypto/tls"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/rollguard/rollguard/configs"
	"github.com/rollguard/rollguard/sources"
	"github.com/rollguard/rollguard/sources/otlp"
	"github.com/rollguard/rollguard/sources/remotewrite"
	"github.com/rollguard/rollguard/web"
)

// otlpWithLimits sets the OTLP receiver's share of limits on c: points
// per request, buckets per histogram, JSON depth, the decode slots it
// shares with remote write, and the bounds of its cumulative state (the
// per-version series budget, with the same versions as remote write's and
// scrape's, and the timestamps ahead).
func otlpWithLimits(c otlp.Config, cfg *configs.Config, decodes *sources.DecodeLimiter) otlp.Config {
	l := cfg.Limits
	c.MaxPoints, c.MaxBuckets, c.MaxJSONDepth, c.Decodes = l.MaxPointsPerRequest, l.MaxBucketsPerHistogram, l.MaxJSONDepth, decodes
	c.MaxSeriesPerVersion, c.VersionLabels = l.MaxSeriesPerVersion, versionLabels(cfg)
	c.MaxTimestampAhead = time.Duration(l.MaxTimestampAhead)
	return c
}

// limitRemoteWrite runs the remote-write handler in the decode slots it
// shares with OTLP; the body is read first (up to remote write's limit on
// it), so that a slow sender holds no slot.
func limitRemoteWrite(decodes *sources.DecodeLimiter, h http.Handler) http.Handler {
	return decodes.Wrap("remote_write", remotewrite.DefaultMaxRequestBytes, h)
}

// otlpGRPCServer builds the OTLP/gRPC server for receiver: credentials
// are checked before a request is read and the receiver decodes it in a
// decode slot (GRPCServerOptions), panics become Internal, and tlsCfg,
// when set, secures it.
func otlpGRPCServer(receiver *otlp.Receiver, auth *web.Authenticator, tlsCfg *tls.Config, log hclog.Logger) *grpc.Server {
	opts := append(receiver.GRPCServerOptions(auth), grpc.ChainUnaryInterceptor(grpcRecover(log)))
	if tlsCfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	s := grpc.NewServer(opts...)
	receiver.RegisterGRPC(s)
	return s
}
