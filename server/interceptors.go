package server

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agate-pdp/agate/jobs"
)

// recoverUnary turns a handler panic into INTERNAL and logs its stack; the process and
// every other request carry on. It is first in the chain so it also covers the others.
func recoverUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				log.ErrorContext(ctx, "panic in handler", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		return h(ctx, req)
	}
}

func recoverStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				log.ErrorContext(ss.Context(), "panic in handler", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		return h(srv, ss)
	}
}

// deadlineUnary caps how long any call may run, whatever deadline the client sent.
func deadlineUnary(max time.Duration) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		// A client's own deadline within the cap needs no second one; the transport
		// cancels the call's context when it ends either way.
		if d, ok := ctx.Deadline(); ok && time.Until(d) <= max {
			return h(ctx, req)
		}
		ctx, cancel := context.WithTimeout(ctx, max)
		defer cancel()
		return h(ctx, req)
	}
}

// authUnary authenticates the caller, checks the method's roles and puts the principal
// in the context for handlers. A request the codec found invalid UTF-8 in is refused
// here, after authentication, so a caller without credentials learns nothing about how
// its request was read.
func (s *Server) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	badUTF8 := s.codec.take(req) // always taken, so no record outlives its request
	if !isPublic(info.FullMethod) {
		var err error
		if ctx, err = s.authorize(ctx, info.FullMethod); err != nil {
			return nil, toStatus(ctx, s.log, err)
		}
	}
	if badUTF8 != nil {
		return nil, toStatus(ctx, s.log, badUTF8)
	}
	return h(ctx, req)
}

func (s *Server) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if isPublic(info.FullMethod) {
		return h(srv, ss)
	}
	ctx, err := s.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return toStatus(ctx, s.log, err)
	}
	return h(srv, &contextStream{ServerStream: ss, ctx: ctx})
}

func (s *Server) authorize(ctx context.Context, method string) (context.Context, error) {
	p, err := s.auth.Authenticate(ctx)
	if err != nil {
		return ctx, err
	}
	if err := Authorize(method, p); err != nil {
		return ctx, err
	}
	return withPrincipal(ctx, p), nil
}

// contextStream lets a stream handler see the context the interceptors built.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c *contextStream) Context() context.Context { return c.ctx }

// observeUnary logs each call as one JSON line and records its count and latency.
// It runs before authentication, so refused calls are counted too; authentication
// fills in the principal through the callInfo it leaves in the context.
func (s *Server) observeUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	ci := &callInfo{}
	resp, err := h(context.WithValue(ctx, callInfoKey{}, ci), req)
	s.observe(ctx, ci, info.FullMethod, start, err)
	return resp, err
}

func (s *Server) observeStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	start := time.Now()
	ci := &callInfo{}
	err := h(srv, &contextStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), callInfoKey{}, ci)})
	s.observe(ss.Context(), ci, info.FullMethod, start, err)
	return err
}

// callInfo is the one context value a call carries: the principal, which
// authentication sets for the handlers and the logging interceptor reads back out.
type callInfo struct{ principal jobs.Principal }

type callInfoKey struct{}

func (s *Server) observe(ctx context.Context, ci *callInfo, method string, start time.Time, err error) {
	code := status.Code(err)
	elapsed := time.Since(start)
	if s.metrics != nil {
		r := s.rpcSeries(method, code)
		r.count.Inc()
		r.latency.Observe(elapsed.Seconds())
	}
	// Successful calls log at debug: at thousands of decisions a second the evidence
	// store, not the log, is the record.
	level := slog.LevelDebug
	switch code {
	case codes.OK:
	case codes.Unavailable:
		// An outage fails every call: noteDown logs it once, each call only at debug.
		if s.attached.Load() {
			s.noteDown()
		}
	case codes.Internal, codes.Unknown, codes.DataLoss:
		level = slog.LevelError
	default:
		level = slog.LevelInfo
	}
	if !s.log.Enabled(ctx, level) {
		return // spares boxing the attributes of a line nobody reads
	}
	s.log.Log(ctx, level, "rpc", "method", method, "code", code.String(),
		"duration_ms", float64(elapsed.Microseconds())/1000, "principal", ci.principal.ID)
}
