package otlp

import (
	"context"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// The OTLP/gRPC service is registered by hand rather than through
// pmetricotlp.RegisterGRPCServer: its generated handler decodes the
// request before any interceptor or handler of ours runs, so neither
// authentication nor the decode slot could come first. Here gRPC hands
// the handler the message's bytes (read and decompressed, within
// MaxRequestBytes) and the receiver decodes them itself, in a decode slot;
// authentication runs earlier still, in the transport, before the message
// is read at all (authTap).

const (
	metricsServiceName = "opentelemetry.proto.collector.metrics.v1.MetricsService"
	exportMethod       = "/" + metricsServiceName + "/Export"
)

// grpcFrame is one gRPC message as it came off the wire, not yet decoded.
type grpcFrame []byte

// frameCodec passes grpcFrames through as bytes; anything else goes to
// the registered protobuf codec.
type frameCodec struct{}

func (frameCodec) Name() string { return "proto" }

func (frameCodec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*grpcFrame); ok {
		return mem.BufferSlice{mem.SliceBuffer(*f)}, nil
	}
	return encoding.GetCodecV2("proto").Marshal(v)
}

func (frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if f, ok := v.(*grpcFrame); ok {
		*f = data.Materialize() // a copy: gRPC reuses data's buffers
		return nil
	}
	return encoding.GetCodecV2("proto").Unmarshal(data, v)
}

// frameExporter is what the service's handler calls.
type frameExporter interface {
	exportFrame(ctx context.Context, in grpcFrame) (*grpcFrame, error)
}

var metricsService = grpc.ServiceDesc{
	ServiceName: metricsServiceName,
	HandlerType: (*frameExporter)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Export", Handler: exportHandler}},
	Streams:     []grpc.StreamDesc{},
	Metadata:    "opentelemetry/proto/collector/metrics/v1/metrics_service.proto",
}

func exportHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(grpcFrame)
	if err := dec(in); err != nil {
		return nil, err
	}
	handle := func(ctx context.Context, req any) (any, error) {
		return srv.(frameExporter).exportFrame(ctx, *req.(*grpcFrame))
	}
	if interceptor == nil {
		return handle(ctx, in)
	}
	return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: exportMethod}, handle)
}

// exportFrame decodes and takes one OTLP/gRPC export in a decode slot.
func (r *Receiver) exportFrame(ctx context.Context, in grpcFrame) (*grpcFrame, error) {
	release, err := r.cfg.Decodes.Acquire(ctx, "otlp_grpc")
	if err != nil {
		return nil, r.grpcError(&httpError{code: http.StatusServiceUnavailable, msg: err.Error()})
	}
	defer release()
	er, atDoor, err := r.decodeProto(in)
	if err != nil {
		return nil, r.grpcError(err)
	}
	resp, err := r.consume(er.Metrics(), atDoor)
	if err != nil {
		return nil, r.grpcError(err)
	}
	r.metrics.requests.WithLabelValues("200").Inc()
	body, err := resp.MarshalProto()
	if err != nil {
		return nil, r.grpcError(err)
	}
	out := grpcFrame(body)
	return &out, nil
}

// Authorizer checks the value of an Authorization header, or of the
// authorization metadata of a gRPC call; web.Authenticator is one.
type Authorizer interface {
	Check(authorization string) error
}

// GRPCServerOptions are the options of a gRPC server that serves the
// receiver (RegisterGRPC): the message size bound (MaxRequestBytes), the
// codec that leaves decoding to the receiver, and, when auth is not nil,
// the credentials check that runs before a request is read, so that a
// client without them costs no decoding.
func (r *Receiver) GRPCServerOptions(auth Authorizer) []grpc.ServerOption {
	opts := []grpc.ServerOption{grpc.MaxRecvMsgSize(int(r.cfg.MaxRequestBytes)), grpc.ForceServerCodecV2(frameCodec{})}
	if auth != nil {
		opts = append(opts, grpc.InTapHandle(r.authTap(auth)))
	}
	return opts
}

// authTap refuses a call without valid credentials in its authorization
// metadata with Unauthenticated. It runs in the transport when the call's
// headers arrive, before the message is read.
func (r *Receiver) authTap(auth Authorizer) tap.ServerInHandle {
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		var h string
		if v := info.Header.Get("authorization"); len(v) > 0 {
			h = v[0]
		}
		if err := auth.Check(h); err != nil {
			r.metrics.requests.WithLabelValues("401").Inc()
			return ctx, status.Error(codes.Unauthenticated, "missing or invalid credentials in the authorization metadata")
		}
		return ctx, nil
	}
}

// RegisterGRPC registers the receiver's MetricsService on s, which must
// have been built with GRPCServerOptions.
func (r *Receiver) RegisterGRPC(s *grpc.Server) { s.RegisterService(&metricsService, r) }
