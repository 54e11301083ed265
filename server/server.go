package server

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/agate-pdp/agate/audit"
	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/store"
)

// Config is everything the gRPC server is built from.
type Config struct {
	// Jobs, Audit and Store are the Backend; without Jobs the server answers UNAVAILABLE
	// until Attach installs one.
	Jobs  *jobs.Service
	Audit *audit.Service
	Store store.Store

	Auth    *Authenticator
	Metrics *Metrics // optional
	Log     *slog.Logger
	TLS     *tls.Config // optional; with ClientCAs set, client certificates authenticate

	Tracer       trace.TracerProvider // spans of each call (default: none); a caller's trace context is read either way
	Clock        func() time.Time     // default time.Now
	MaxRecvBytes int                  // largest request accepted; default 4 MiB
	MaxCallTime  time.Duration        // longest a call may run; default 30 s
	Limits       StreamLimits
}

// streamWorkers is how many calls at once run on a worker: enough for the concurrency
// a replica serves, idle workers costing only their stacks.
func streamWorkers() uint32 { return uint32(max(64, 4*runtime.GOMAXPROCS(0))) }

// Backend is what the server serves from once the database is reachable.
type Backend struct {
	Jobs  *jobs.Service
	Audit *audit.Service // serves EvidenceService; without it those RPCs are UNIMPLEMENTED
	Store store.Store    // pinged for health
}

// StreamLimits bound streaming calls, which would otherwise hold a connection, a
// goroutine and perhaps a database cursor for as long as a client keeps them open.
type StreamLimits struct {
	MaxConcurrentStreams uint32        // streams per client connection; default 100
	MaxStreamTime        time.Duration // longest an authenticated stream runs; default 15 min
	MaxPublicStreams     int           // unauthenticated streams (health Watch, reflection) at once; default 64
	MaxPublicStreamTime  time.Duration // longest one of those runs; default 5 min, at most MaxStreamTime
}

func (l *StreamLimits) setDefaults() {
	if l.MaxConcurrentStreams == 0 {
		l.MaxConcurrentStreams = 100
	}
	if l.MaxStreamTime <= 0 {
		l.MaxStreamTime = 15 * time.Minute
	}
	if l.MaxPublicStreams <= 0 {
		l.MaxPublicStreams = 64
	}
	if l.MaxPublicStreamTime <= 0 {
		l.MaxPublicStreamTime = 5 * time.Minute
	}
	l.MaxPublicStreamTime = min(l.MaxPublicStreamTime, l.MaxStreamTime)
}

// Server is Agate's gRPC server.
type Server struct {
	// jobs, audit and store are written once, by Attach, before attached is set; every
	// handler runs after attachedUnary or attachedStream has loaded attached as true, so
	// reading them is ordered after the write.
	jobs     *jobs.Service
	audit    *audit.Service
	store    store.Store
	attached atomic.Bool
	down     atomic.Bool // the database was last seen unreachable; its log line was written

	auth    *Authenticator
	metrics *Metrics
	log     *slog.Logger
	health  *health.Server
	grpc    *grpc.Server
	now     func() time.Time

	codec         *requestCodec // decodes requests; records invalid UTF-8 for the interceptors
	maxRecv       int           // largest request accepted, in bytes
	maxCall       time.Duration // longest a unary call runs
	http          httpCalls     // unary calls in flight on the HTTP API, drained before the gRPC server stops
	limits        StreamLimits
	streams       map[string]bool          // streaming methods, for streamTap; written before Serve
	publicStreams chan struct{}            // a semaphore of MaxPublicStreams slots
	series        map[string]*methodSeries // the request metrics' series by method; written before Serve
}

// Compile-time checks that the adapters implement the generated services.
var (
	_ agatev1.DecisionServiceServer = (*decisionService)(nil)
	_ agatev1.PolicyServiceServer   = (*policyService)(nil)
	_ agatev1.EvidenceServiceServer = (*evidenceService)(nil)
)

// New assembles the gRPC server from one visible list of options and interceptors.
func New(cfg Config) (*Server, error) {
	if cfg.Auth == nil {
		return nil, errors.New("server: Auth is required")
	}
	if cfg.Auth.RequiresClientCert() && (cfg.TLS == nil || cfg.TLS.ClientAuth != tls.RequireAndVerifyClientCert) {
		return nil, errors.New("server: requiring client certificates needs TLS with tls.RequireAndVerifyClientCert")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.MaxRecvBytes <= 0 {
		cfg.MaxRecvBytes = 4 << 20
	}
	if cfg.MaxCallTime <= 0 {
		cfg.MaxCallTime = 30 * time.Second
	}
	cfg.Limits.setDefaults()
	s := &Server{auth: cfg.Auth, metrics: cfg.Metrics, log: cfg.Log, health: health.NewServer(), now: cfg.Clock,
		codec: newRequestCodec(), maxRecv: cfg.MaxRecvBytes, maxCall: cfg.MaxCallTime, limits: cfg.Limits, publicStreams: make(chan struct{}, cfg.Limits.MaxPublicStreams)}

	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider()
	}
	opts := []grpc.ServerOption{
		grpc.StatsHandler(traceHandler(cfg.Tracer)), // spans, or only the caller's trace context when tracing is off
		grpc.MaxRecvMsgSize(cfg.MaxRecvBytes),
		grpc.ForceServerCodecV2(s.codec), // invalid UTF-8 becomes INVALID_ARGUMENT, not INTERNAL
		grpc.MaxConcurrentStreams(cfg.Limits.MaxConcurrentStreams),
		// Calls run on long-lived workers instead of a new goroutine each: a new
		// goroutine's stack grows, and is copied, several times through the interceptors
		// and handler, which cost a fifth of an Evaluate's instructions. A call that finds
		// every worker busy gets its own goroutine, as without workers.
		grpc.NumStreamWorkers(streamWorkers()),
		grpc.InTapHandle(s.streamTap), // every stream's maximum duration, at the transport
		// Pings find dead peers under long streams; clients pinging more often than
		// every 10 s are told to stop (GOAWAY too_many_pings).
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute,
			Time: time.Minute, Timeout: 20 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(
			recoverUnary(s.log), // first: covers every interceptor after it
			s.observeUnary,      // logs and counts every call, refused ones included
			deadlineUnary(cfg.MaxCallTime),
			s.attachedUnary, // UNAVAILABLE until the database has been reached
			s.authUnary,     // authentication, then the method's roles
		),
		grpc.ChainStreamInterceptor(
			recoverStream(s.log),
			s.observeStream,
			s.attachedStream,
			s.limitStream, // before authentication: public streams are the ones it counts
			s.authStream,
		),
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}

	s.grpc = grpc.NewServer(opts...)
	agatev1.RegisterDecisionServiceServer(s.grpc, &decisionService{s: s})
	agatev1.RegisterPolicyServiceServer(s.grpc, &policyService{s: s})
	agatev1.RegisterEvidenceServiceServer(s.grpc, &evidenceService{s: s})
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	s.streams = streamMethods(s.grpc)
	s.series = newSeriesTable(serviceMethods(s.grpc))
	s.setServing(false)
	if cfg.Jobs != nil {
		if err := s.Attach(Backend{Jobs: cfg.Jobs, Audit: cfg.Audit, Store: cfg.Store}); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Attach installs the backend once the database is reachable; calls other than health
// and reflection answer UNAVAILABLE before it. Health stays NOT_SERVING until
// WatchHealth finds the database answering.
func (s *Server) Attach(b Backend) error {
	if b.Jobs == nil || b.Store == nil {
		return errors.New("server: Backend needs Jobs and Store")
	}
	if s.attached.Load() {
		return errors.New("server: backend already attached")
	}
	s.jobs, s.audit, s.store = b.Jobs, b.Audit, b.Store
	s.attached.Store(true)
	return nil
}

// errStarting answers calls that arrive before the database has first been reached.
var errStarting = status.Error(codes.Unavailable, "starting: waiting for the database")

func (s *Server) attachedUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if !s.attached.Load() && !isPublic(info.FullMethod) {
		_ = s.codec.take(req) // authUnary will not run to forget the codec's record of it
		return nil, errStarting
	}
	return h(ctx, req)
}

func (s *Server) attachedStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if !s.attached.Load() && !isPublic(info.FullMethod) {
		return errStarting
	}
	return h(srv, ss)
}

// Serve accepts connections on lis until Shutdown.
func (s *Server) Serve(lis net.Listener) error { return s.grpc.Serve(lis) }

// setServing sets the overall and per-service health status.
func (s *Server) setServing(ok bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	for _, name := range []string{"", agatev1.DecisionService_ServiceDesc.ServiceName,
		agatev1.PolicyService_ServiceDesc.ServiceName, agatev1.EvidenceService_ServiceDesc.ServiceName} {
		s.health.SetServingStatus(name, st)
	}
}

// Ready reports whether the database answers; health follows it.
func (s *Server) Ready(ctx context.Context) error {
	if !s.attached.Load() {
		return errStarting
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return s.store.Ping(ctx)
}

// WatchHealth keeps the health service in step with the database until ctx ends: a
// replica that cannot reach the database reports NOT_SERVING so balancers route around it.
func (s *Server) WatchHealth(ctx context.Context, every time.Duration) {
	last := -1
	check := func() {
		ok := s.Ready(ctx) == nil
		if state := map[bool]int{false: 0, true: 1}[ok]; state != last {
			s.setServing(ok)
			last = state
		}
		if ok {
			s.noteUp()
		} else if ctx.Err() == nil {
			s.noteDown()
		}
	}
	check()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			check()
		}
	}
}

// noteDown and noteUp log an outage once when it begins and once when it ends, however
// many calls fail in between: a six-second outage is two lines, not hundreds.
func (s *Server) noteDown() {
	if s.down.CompareAndSwap(false, true) {
		s.log.Warn("database unreachable: not serving; calls answer UNAVAILABLE until it returns")
	}
}

func (s *Server) noteUp() {
	if s.down.CompareAndSwap(true, false) {
		s.log.Info("database reachable again: serving")
	}
}

// Shutdown marks the server NOT_SERVING, lets in-flight calls finish, and stops hard
// when ctx ends first, so a stuck call cannot hold a deploy hostage.
//
// Unary calls on the HTTP API are let finish first: grpc-go ends a call that arrived
// through ServeHTTP as soon as a graceful stop begins. Its streams end then; their
// clients resume with their cursor.
func (s *Server) Shutdown(ctx context.Context) {
	s.health.Shutdown()
	s.http.drain(ctx)
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("drain deadline passed: stopping hard")
		s.grpc.Stop()
		<-done
	}
}
