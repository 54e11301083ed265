package server

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// errStreamTooLong is the cause of a stream's context when it reached its maximum
// duration.
var errStreamTooLong = errors.New("stream reached its maximum duration")

type streamCancelKey struct{}

// streamTap bounds every streaming call's lifetime at the transport. A deadline set by an
// interceptor would reach the handler's context only, while a handler blocked receiving,
// or sending to a client that does not read, waits on the transport's: so the deadline
// goes on the context the transport builds the stream on, as a client's grpc-timeout
// would. It runs under the transport's lock and must stay cheap.
func (s *Server) streamTap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if !s.streams[info.FullMethodName] {
		return ctx, nil // unary calls get deadlineUnary's cap
	}
	limit := s.limits.MaxStreamTime
	if isPublic(info.FullMethodName) {
		limit = s.limits.MaxPublicStreamTime
	}
	ctx, cancel := context.WithTimeoutCause(ctx, limit, errStreamTooLong)
	// The transport cancels the stream's context, and so this one, when the stream
	// ends; limitStream also cancels it, for tidiness.
	return context.WithValue(ctx, streamCancelKey{}, cancel), nil
}

// limitStream admits at most MaxPublicStreams unauthenticated streams at once and
// reports a stream cut at its maximum duration as DEADLINE_EXCEEDED, so the client
// knows to reconnect or resume. It also wraps every stream in utf8Stream, so that no
// record of the request codec outlives its message.
func (s *Server) limitStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx := ss.Context()
	if cancel, ok := ctx.Value(streamCancelKey{}).(context.CancelFunc); ok {
		defer cancel()
	}
	if isPublic(info.FullMethod) {
		select {
		case s.publicStreams <- struct{}{}:
			defer func() { <-s.publicStreams }()
		default:
			return status.Error(codes.ResourceExhausted, "too many unauthenticated streams open; retry later")
		}
	}
	err := h(srv, &utf8Stream{ServerStream: ss, s: s})
	atLimit := errors.Is(context.Cause(ctx), errStreamTooLong) ||
		(ctx.Value(httpStreamLimitKey{}) != nil && errors.Is(ctx.Err(), context.DeadlineExceeded))
	if err != nil && atLimit {
		return status.Error(codes.DeadlineExceeded,
			fmt.Sprintf("stream reached the server's maximum duration of %s; reconnect or resume", s.limitFor(info.FullMethod)))
	}
	return err
}

func (s *Server) limitFor(method string) string {
	if isPublic(method) {
		return s.limits.MaxPublicStreamTime.String()
	}
	return s.limits.MaxStreamTime.String()
}

// streamMethods lists the registered methods that stream in either direction.
func streamMethods(g *grpc.Server) map[string]bool {
	out := map[string]bool{}
	for svc, info := range g.GetServiceInfo() {
		for _, m := range info.Methods {
			if m.IsClientStream || m.IsServerStream {
				out["/"+svc+"/"+m.Name] = true
			}
		}
	}
	return out
}

// serviceMethods lists every registered method by its full name.
func serviceMethods(g *grpc.Server) []string {
	var out []string
	for svc, info := range g.GetServiceInfo() {
		for _, m := range info.Methods {
			out = append(out, "/"+svc+"/"+m.Name)
		}
	}
	return out
}
