package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/agate-pdp/agate/authzen"
	"github.com/agate-pdp/agate/buildinfo"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/notify"
	"github.com/agate-pdp/agate/server"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/telemetry"
)

// serveGCPercent is the garbage collector's target when GOGC does not set one: collect
// once the heap has grown to five times what survived the last collection. A replica
// keeps only a few MB live, so at Go's default of 100 it collected every few hundred
// calls and the collector took a fifth of an Evaluate's instructions; at 400 it takes
// a quarter of that, for some 20 MB more heap. GOMEMLIMIT, when set, still bounds it.
const serveGCPercent = 400

// collectLessOften applies serveGCPercent unless the operator chose with GOGC.
func collectLessOften() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(serveGCPercent)
	}
}

// policyFilePrincipal is who activates the --policy file, as recorded in evidence.
const policyFilePrincipal = "agate:policy-file"

func runServe(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := parseServeConfig(args, stderr)
	if err != nil {
		return err
	}
	level, _ := parseLevel(cfg.LogLevel)
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	collectLessOften()

	// Everything that can be checked without the database is checked first, and nothing
	// touches the database before both listeners are bound: a start that fails (a bad
	// file, an address in use) leaves no trace in the store and moves no snapshot.
	ids, err := server.LoadIdentities(cfg.TokensFile)
	if err != nil {
		return fmt.Errorf("--tokens: %w", err)
	}
	auth := server.NewAuthenticator(ids, append(cfg.authOptions(), server.AuthLog(log))...)
	cfg.warnUnmappedCertificates(ids, log)
	go checkOIDCIssuer(ctx, ids, log)
	dbPassword, err := cfg.databasePassword(log)
	if err != nil {
		return err
	}
	if cfg.PolicyFile != "" {
		if _, err := os.ReadFile(cfg.PolicyFile); err != nil {
			return fmt.Errorf("--policy: %w", err)
		}
	}
	dests, err := cfg.loadDestinations(log)
	if err != nil {
		return err
	}
	tlsCfg, err := loadTLS(cfg)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := server.NewMetrics(reg)
	if err != nil {
		return err
	}
	tracing, err := telemetry.FromEnv(ctx, buildinfo.Read().Version)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tracing.Shutdown(sctx); err != nil {
			log.Warn("flushing traces", "err", err)
		}
	}()
	srv, err := server.New(server.Config{Auth: auth, Metrics: metrics, Log: log, TLS: tlsCfg,
		MaxCallTime: cfg.MaxCallTime, Limits: cfg.streamLimits(), Tracer: tracing.Provider})
	if err != nil {
		return err
	}
	grpcLis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("--grpc-addr: %w", err)
	}
	httpLis, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		grpcLis.Close()
		return fmt.Errorf("--http-addr: %w", err)
	}
	httpSrv := &http.Server{Handler: httpMux(reg, srv, cfg.Pprof), ReadHeaderTimeout: 5 * time.Second}
	az, err := listenAuthZEN(cfg, auth, tlsCfg, log)
	if err != nil {
		grpcLis.Close()
		httpLis.Close()
		return err
	}
	api, err := listenHTTPAPI(cfg, srv, tlsCfg, log)
	if err != nil {
		grpcLis.Close()
		httpLis.Close()
		if az.lis != nil { // bound, never served
			az.lis.Close()
		}
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)
	go func() { errc <- srv.Serve(grpcLis) }()
	go func() {
		if err := httpSrv.Serve(httpLis); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	az.serve(errc)
	api.serve(errc)
	log.Info("agate listening", "grpc", grpcLis.Addr().String(), "http", httpLis.Addr().String(),
		"authzen", az.addr(), "http_api", api.addr(), "db", redactURL(cfg.DB))

	// Until the database answers, health says NOT_SERVING and calls answer UNAVAILABLE.
	type started struct {
		stop func()
		err  error
	}
	startc := make(chan started, 1)
	go func() {
		st, err := openStore(ctx, cfg.DB, dbPassword, log, tracing.Provider)
		if err != nil {
			startc <- started{nil, err}
			return
		}
		stop, err := startBackend(ctx, cfg, st, srv, az.handler, auth, metrics, reg, dests, log)
		startc <- started{stop, err}
	}()

	var serveErr error
	var stop func()
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	case st := <-startc:
		startc = nil
		if st.err != nil {
			serveErr = st.err
			break
		}
		stop = st.stop
		log.Info("agate serving", "grpc", grpcLis.Addr().String(), "http", httpLis.Addr().String())
		hint(stderr, grpcLis.Addr().String())
		select {
		case <-ctx.Done():
		case serveErr = <-errc:
		}
	}
	log.Info("shutting down", "grace", cfg.ShutdownGrace.String())
	cancel() // a start still waiting for the database gives up
	sctx, scancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer scancel()
	// The HTTP API's calls run in the gRPC server: both drain together, and its hard
	// stop at the deadline ends them too.
	var draining sync.WaitGroup
	draining.Go(func() { api.shutdown(sctx) })
	srv.Shutdown(sctx)
	draining.Wait()
	_ = httpSrv.Shutdown(sctx)
	az.shutdown(sctx)
	if startc != nil { // the start was cut short: close whatever it had opened
		if st := <-startc; st.err == nil {
			stop = st.stop
		}
	}
	if stop != nil {
		stop()
	}
	return serveErr
}

// startBackend takes the opened store, applies the policy file, and attaches the
// services to srv. stop closes what it opened and the store, after the gRPC server has
// drained.
func startBackend(ctx context.Context, cfg serveConfig, st store.Store, srv *server.Server, az *authzen.Handler, auth *server.Authenticator,
	metrics *server.Metrics, reg prometheus.Registerer, dests []*notify.Destination, log *slog.Logger) (stop func(), err error) {
	var closers []func()
	closeAll := func() {
		for _, c := range slices.Backward(closers) {
			c()
		}
	}
	defer func() {
		if err != nil { // a failed start closes what it opened, the store included
			closeAll()
		}
	}()
	closers = append(closers, func() { _ = st.Close() })
	cache, err := snapshots.NewCache(cfg.SnapshotCacheSize)
	if err != nil {
		return nil, err
	}
	tracker := snapshots.NewTracker(st, cache, log)
	ev, err := startEvidence(ctx, cfg, st, cache, time.Now, log) // identity, witness, clock
	if err != nil {
		return nil, err
	}
	closers = append(closers, ev.Close)
	svc, err := jobs.New(jobs.Config{Store: ev.Store, Tracker: tracker, Cache: cache, Log: log,
		Batch: jobs.Batch{Window: cfg.DecideBatchWindow, MaxRows: cfg.DecideBatchMax, InFlight: cfg.decideInFlight()},
		Watch: jobs.WatchConfig{Settle: cfg.EvidenceSettle}}) // watch cursors pass events as QueryEvidence pages do
	if err != nil {
		return nil, err
	}
	closers = append(closers, svc.Close) // after the gRPC server has drained, before the store closes
	if cfg.PolicyFile != "" {
		if err := loadPolicyFile(ctx, svc, cfg.PolicyFile, log); err != nil {
			return nil, err
		}
	}
	if _, err := tracker.Refresh(ctx); err != nil && !errors.Is(err, snapshots.ErrNoActive) {
		return nil, fmt.Errorf("reading the active snapshot: %w", err)
	}
	for _, c := range ev.Collectors() {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	if a, ok := tracker.Current(); ok {
		metrics.SetActiveSnapshot(a.Snapshot.ID)
	}
	deliverer, err := cfg.newDeliverer(ev.Store, dests, reg, log)
	if err != nil {
		return nil, err
	}
	if err := srv.Attach(server.Backend{Jobs: svc, Audit: ev.Auditor, Store: ev.Store}); err != nil {
		return nil, err
	}
	if az != nil {
		if err := az.Attach(svc, ev.AuthZENSecret()); err != nil {
			return nil, err
		}
	}
	go tracker.Run(ctx, cfg.SnapshotRefresh)
	go ev.Run(ctx)
	dctx, dstop := context.WithCancel(ctx)
	delivering := make(chan struct{})
	go func() { deliverer.Run(dctx); close(delivering) }()
	closers = append(closers, func() { dstop(); <-delivering }) // before the store closes
	go svc.RunExpiry(ctx, cfg.ExpiryInterval)
	go srv.WatchHealth(ctx, time.Second)
	go followActive(ctx, tracker, metrics)
	go reloadOnHUP(ctx, cfg, svc, auth, deliverer, log)
	return closeAll, nil
}

func loadPolicyFile(ctx context.Context, svc *jobs.Service, path string, log *slog.Logger) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--policy: %w", err)
	}
	res, err := svc.PutPolicy(ctx, jobs.Principal{ID: policyFilePrincipal}, src, true)
	if err != nil {
		return fmt.Errorf("--policy %s: %w", path, err)
	}
	log.Info("policy file loaded", "file", path, "snapshot", res.Snapshot.ID, "created", res.Created, "activated", res.Activated)
	return nil
}

// reloadOnHUP re-reads the tokens file, the notification destinations and the policy
// file on SIGHUP. A bad file is logged and the previous one stays in force.
func reloadOnHUP(ctx context.Context, cfg serveConfig, svc *jobs.Service, auth *server.Authenticator, deliverer *notify.Deliverer, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		if ids, err := server.LoadIdentities(cfg.TokensFile); err != nil {
			log.Error("reloading tokens: keeping the previous ones", "err", err)
		} else {
			auth.Swap(ids)
			log.Info("tokens reloaded", "file", cfg.TokensFile)
			go checkOIDCIssuer(ctx, ids, log)
		}
		if cfg.NotificationsFile != "" {
			// Rotating a webhook's signing secret means editing this file twice: with both
			// secrets, then with the new one only; neither edit needs a restart.
			dests, err := cfg.loadDestinations(log)
			if err == nil {
				err = deliverer.SetDestinations(dests)
			}
			if err != nil {
				log.Error("reloading notification destinations: keeping the previous ones", "err", err)
			}
		}
		if cfg.PolicyFile != "" {
			if err := loadPolicyFile(ctx, svc, cfg.PolicyFile, log); err != nil {
				log.Error("reloading policy: keeping the active snapshot", "err", err)
			}
		}
	}
}

// followActive keeps the active-snapshot info gauge in step with the tracker.
func followActive(ctx context.Context, tracker *snapshots.Tracker, m *server.Metrics) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if a, ok := tracker.Current(); ok {
				m.SetActiveSnapshot(a.Snapshot.ID)
			}
		}
	}
}

func httpMux(reg *prometheus.Registry, srv *server.Server, profiler bool) http.Handler {
	mux := http.NewServeMux()
	if profiler {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", redactedCmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := srv.Ready(r.Context()); err != nil {
			http.Error(w, "database unreachable", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

func loadTLS(cfg serveConfig) (*tls.Config, error) {
	if cfg.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	t := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.TLSClientCA != "" {
		pem, err := os.ReadFile(cfg.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("--tls-client-ca: no certificates found")
		}
		// Bearer tokens stay valid over TLS, so a certificate is verified when sent
		// but not demanded.
		t.ClientCAs = pool
		t.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return t, nil
}

// hint tells a person at a terminal where the server listens and what to try first;
// logs to a file or a collector get only the JSON lines.
func hint(w io.Writer, grpcAddr string) {
	f, ok := w.(*os.File)
	if !ok {
		return
	}
	if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return
	}
	fmt.Fprintf(w, `
Agate is serving gRPC on %[1]s. With the example tokens (make run), try from the repository root:
  go tool -modfile=tools.mod grpcurl -plaintext %[1]s list
  go tool -modfile=tools.mod grpcurl -plaintext -H 'authorization: Bearer dev-audit' -d '{}' %[1]s agate.v1.EvidenceService/Stats
The README's walkthrough has the rest. Stop with Ctrl-C; start fresh by deleting data/.

`, grpcAddr)
}
