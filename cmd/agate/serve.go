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
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/server"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/postgres"
	"github.com/agate-pdp/agate/store/sqlite"
)

// policyFilePrincipal is who activates the --policy file, as recorded in evidence.
const policyFilePrincipal = "agate:policy-file"

func runServe(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := parseServeConfig(args, stderr)
	if err != nil {
		return err
	}
	level, _ := parseLevel(cfg.LogLevel)
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))

	st, err := openStore(ctx, cfg.DB, log)
	if err != nil {
		return err
	}
	defer st.Close()

	ids, err := server.LoadIdentities(cfg.TokensFile)
	if err != nil {
		return fmt.Errorf("--tokens: %w", err)
	}
	auth := server.NewAuthenticator(ids)

	cache, err := snapshots.NewCache(cfg.SnapshotCacheSize)
	if err != nil {
		return err
	}
	tracker := snapshots.NewTracker(st, cache, log)
	ev, err := startEvidence(ctx, cfg, st, cache, time.Now, log) // identity, witness, clock
	if err != nil {
		return err
	}
	defer ev.Close()
	svc, err := jobs.New(jobs.Config{Store: ev.Store, Tracker: tracker, Cache: cache, Log: log,
		Batch: jobs.Batch{Window: cfg.DecideBatchWindow, MaxRows: cfg.DecideBatchMax, InFlight: cfg.decideInFlight()}})
	if err != nil {
		return err
	}
	defer svc.Close() // after the gRPC server has drained, before the store closes
	if cfg.PolicyFile != "" {
		if err := loadPolicyFile(ctx, svc, cfg.PolicyFile, log); err != nil {
			return err
		}
	}
	if _, err := tracker.Refresh(ctx); err != nil && !errors.Is(err, snapshots.ErrNoActive) {
		return fmt.Errorf("reading the active snapshot: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(ev.Collectors()...)
	metrics, err := server.NewMetrics(reg)
	if err != nil {
		return err
	}
	if a, ok := tracker.Current(); ok {
		metrics.SetActiveSnapshot(a.Snapshot.ID)
	}
	tlsCfg, err := loadTLS(cfg)
	if err != nil {
		return err
	}
	srv, err := server.New(server.Config{Jobs: svc, Audit: ev.Auditor, Store: ev.Store, Auth: auth, Metrics: metrics,
		Log: log, TLS: tlsCfg, MaxCallTime: cfg.MaxCallTime})
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

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go tracker.Run(ctx, cfg.SnapshotRefresh)
	go ev.Run(ctx)
	go srv.WatchHealth(ctx, time.Second)
	go followActive(ctx, tracker, metrics)
	go reloadOnHUP(ctx, cfg, svc, auth, log)

	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(grpcLis) }()
	go func() {
		if err := httpSrv.Serve(httpLis); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	log.Info("agate serving", "grpc", grpcLis.Addr().String(), "http", httpLis.Addr().String(), "db", redactURL(cfg.DB))

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	log.Info("shutting down", "grace", cfg.ShutdownGrace.String())
	sctx, scancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer scancel()
	srv.Shutdown(sctx)
	_ = httpSrv.Shutdown(sctx)
	return serveErr
}

// openStore picks the backend by the URL's scheme; anything else is a SQLite path.
func openStore(ctx context.Context, db string, log *slog.Logger) (store.Store, error) {
	scheme, _, _ := strings.Cut(db, "://")
	switch scheme {
	case "postgres", "postgresql":
		return postgres.Open(ctx, db, postgres.Options{Logger: log})
	case "sqlite", "file":
		return sqlite.Open(ctx, strings.TrimPrefix(strings.TrimPrefix(db, "sqlite://"), "file://"), sqlite.Options{Logger: log})
	default:
		if strings.Contains(db, "://") {
			return nil, fmt.Errorf("--db: unsupported scheme %q (use a file path, postgres:// or postgresql://)", scheme)
		}
		return sqlite.Open(ctx, db, sqlite.Options{Logger: log})
	}
}

func redactURL(db string) string {
	if i := strings.Index(db, "@"); i > 0 && strings.Contains(db[:i], "://") {
		scheme, _, _ := strings.Cut(db, "://")
		return scheme + "://…" + db[i:]
	}
	return db
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

// reloadOnHUP re-reads the tokens file and the policy file on SIGHUP. A bad file is
// logged and the previous one stays in force.
func reloadOnHUP(ctx context.Context, cfg serveConfig, svc *jobs.Service, auth *server.Authenticator, log *slog.Logger) {
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
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
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
