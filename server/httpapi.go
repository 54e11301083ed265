package server

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
)

// httpServices are the services the HTTP API serves: Agate's own. Health stays on the
// gRPC port and /readyz; reflection is a bidirectional stream, which HTTP/1.1 cannot carry.
var httpServices = []string{
	agatev1.DecisionService_ServiceDesc.ServiceName,
	agatev1.PolicyService_ServiceDesc.ServiceName,
	agatev1.EvidenceService_ServiceDesc.ServiceName,
}

// connectContentTypes are the Connect protocol's: unary calls send the bare message,
// streaming ones enveloped messages. gRPC and gRPC-Web are refused on this handler: they
// belong on the gRPC port, whose transport enforces the stream limits per connection.
var connectContentTypes = map[string]bool{
	"application/json": true, "application/proto": true,
	"application/connect+json": true, "application/connect+proto": true,
}

// HTTPHandler serves Agate's API over HTTP in the Connect protocol: every RPC is
// POST /agate.v1.<Service>/<Method> with a JSON (or binary protobuf) body, which curl
// can send. connectrpc.com/vanguard transcodes each request into a gRPC call handed to
// this server's own grpc.Server (its ServeHTTP), so every call passes through the same
// interceptors as one on the gRPC port: recovery, tracing, logging and metrics, the
// deadline, the backend check, authentication and the method's roles, and the request
// size limit. JSON keys are the proto's json_name, which is the field name, as grpcurl
// prints them; errors are Connect errors whose details carry the same
// google.rpc.ErrorInfo, with its JSON form under "debug".
//
// Before transcoding, the handler answers what the gRPC port's transport would answer
// before any interceptor runs: UNAVAILABLE until the backend is attached, the request
// size limit, and the streaming calls' maximum duration. It also refuses a caller
// without credentials before the body is read, so that no part of an anonymous
// request is parsed; the interceptors authenticate every call again regardless.
func (s *Server) HTTPHandler() (http.Handler, error) {
	jsonCodec := func(res vanguard.TypeResolver) vanguard.Codec {
		return jsonCodec{&vanguard.JSONCodec{
			// Unpopulated fields are left out, as grpcurl leaves them out; unknown
			// fields are an error naming the field, as they are for grpcurl, rather
			// than silently dropped (a misspelt idempotency_key must not pass).
			MarshalOptions:   protojson.MarshalOptions{Resolver: res},
			UnmarshalOptions: protojson.UnmarshalOptions{Resolver: res},
		}}
	}
	svcs := make([]*vanguard.Service, 0, len(httpServices))
	for _, name := range httpServices {
		svcs = append(svcs, vanguard.NewService(name, s.grpc,
			vanguard.WithTargetProtocols(vanguard.ProtocolGRPC),
			vanguard.WithTargetCodecs(vanguard.CodecProto), // the server's codec is proto only
			vanguard.WithMaxMessageBufferBytes(uint32(s.maxRecv))))
	}
	t, err := vanguard.NewTranscoder(svcs, vanguard.WithCodec(jsonCodec),
		vanguard.WithUnknownHandler(http.HandlerFunc(s.httpUnknown)))
	if err != nil {
		return nil, fmt.Errorf("server: building the HTTP API: %w", err)
	}
	return &httpAPI{s: s, transcoder: t, errs: connect.NewErrorWriter(), methods: s.httpMethods()}, nil
}

// jsonCodec reports a body it cannot read as INVALID_ARGUMENT, as the gRPC port
// reports a message it cannot decode, rather than the transcoder's UNKNOWN.
type jsonCodec struct{ *vanguard.JSONCodec }

func (c jsonCodec) Unmarshal(data []byte, msg proto.Message) error {
	if err := c.JSONCodec.Unmarshal(data, msg); err != nil {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("reading the JSON body: %w", err))
	}
	return nil
}

type httpAPI struct {
	s          *Server
	transcoder *vanguard.Transcoder
	errs       *connect.ErrorWriter
	methods    map[string]bool // the RPCs served, by gRPC method name
}

func (h *httpAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	method := r.URL.Path // /agate.v1.DecisionService/Decide, the gRPC method name
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case r.Method != http.MethodPost:
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed: every RPC is a POST", http.StatusMethodNotAllowed)
		return
	case !connectContentTypes[ct]:
		http.Error(w, "unsupported content type: send Content-Type: application/json (Connect protocol)",
			http.StatusUnsupportedMediaType)
		return
	}
	if !h.methods[method] {
		h.s.httpUnknown(w, r)
		return
	}
	start := time.Now()
	fail := func(err error) {
		h.s.observe(r.Context(), &callInfo{}, method, start, err)
		_ = h.errs.Write(w, r, connectError(err))
	}
	if !h.s.attached.Load() {
		fail(errStarting)
		return
	}
	if r.ContentLength > int64(h.s.maxRecv) {
		fail(errTooLarge(r.ContentLength, h.s.maxRecv))
		return
	}
	if _, err := h.s.auth.AuthenticateHTTP(r); err != nil {
		fail(toStatus(r.Context(), h.s.log, err))
		return
	}
	// A body without a length is cut at the limit; the transcoder then fails the call.
	r.Body = http.MaxBytesReader(w, r.Body, int64(h.s.maxRecv))
	r.Header.Set("Connect-Protocol-Version", "1") // optional for curl; the transcoder needs it to tell Connect from REST
	limit := h.s.maxCall
	if h.s.streams[method] {
		limit = h.s.limits.MaxStreamTime
		r = h.s.limitHTTPStream(r)
	} else {
		if !h.s.http.begin() {
			fail(errStopping)
			return
		}
		defer h.s.http.wg.Done()
	}
	// A client that stops reading cannot hold the connection past the call's limit; the
	// grace lets the final status be written.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(limit + httpWriteGrace))
	h.transcoder.ServeHTTP(w, r)
}

// httpCalls counts the HTTP API's unary calls in flight, so that Shutdown can let
// them finish before the gRPC server stops; once it has begun, new calls are refused.
type httpCalls struct {
	mu      sync.Mutex
	closing bool
	wg      sync.WaitGroup
}

func (c *httpCalls) begin() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	c.wg.Add(1)
	return true
}

func (c *httpCalls) drain(ctx context.Context) {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// errStopping answers an HTTP call that arrives once the server has begun to stop, as
// the gRPC port refuses new calls then.
var errStopping = status.Error(codes.Unavailable, "shutting down: retry on another replica")

// httpWriteGrace is how long past a call's limit its answer may take to write.
const httpWriteGrace = 10 * time.Second

// httpStreamLimitKey marks a stream whose deadline is the server's maximum stream
// duration rather than the client's own timeout.
type httpStreamLimitKey struct{}

// limitHTTPStream does for a stream over HTTP what streamTap does for one on the gRPC
// port. The deadline cannot go on the request's context: grpc-go's ServeHTTP closes a
// call whose request context ends without writing its status. So it goes in the
// Connect timeout, which the transcoder hands to grpc-go as grpc-timeout and grpc-go
// puts on the call's context alone; limitStream then reports it as the gRPC port does.
func (s *Server) limitHTTPStream(r *http.Request) *http.Request {
	limit := s.limits.MaxStreamTime
	if ms, err := strconv.ParseInt(r.Header.Get("Connect-Timeout-Ms"), 10, 64); err == nil && ms >= 0 &&
		time.Duration(ms)*time.Millisecond < limit {
		return r // the client's own, shorter, timeout stands
	}
	r.Header.Set("Connect-Timeout-Ms", strconv.FormatInt(limit.Milliseconds(), 10))
	return r.WithContext(context.WithValue(r.Context(), httpStreamLimitKey{}, true))
}

// httpMethods lists httpServices' RPCs by their gRPC method name.
func (s *Server) httpMethods() map[string]bool {
	out := map[string]bool{}
	info := s.grpc.GetServiceInfo()
	for _, svc := range httpServices {
		for _, m := range info[svc].Methods {
			out["/"+svc+"/"+m.Name] = true
		}
	}
	return out
}

// httpUnknown answers a path that names no RPC, as the gRPC port answers an unknown
// method.
func (s *Server) httpUnknown(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "not found: POST /agate.v1.<Service>/<Method>", http.StatusNotFound)
}

func errTooLarge(got int64, limit int) error {
	return status.Errorf(codes.ResourceExhausted, "request body of %d bytes is larger than the limit of %d bytes", got, limit)
}

// connectError is err, a gRPC status, as a Connect error with the same code, message
// and details (the ErrorInfo among them).
func connectError(err error) *connect.Error {
	st, _ := status.FromError(err)
	cerr := connect.NewError(connect.Code(st.Code()), errors.New(st.Message()))
	for _, d := range st.Proto().GetDetails() {
		m, err := d.UnmarshalNew()
		if err != nil {
			continue
		}
		if detail, err := connect.NewErrorDetail(m); err == nil {
			cerr.AddDetail(detail)
		}
	}
	return cerr
}
