package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/agate-pdp/agate/authzen"
	"github.com/agate-pdp/agate/server"
)

// authzenListener is the AuthZEN HTTP API when --authzen-addr asks for it; its zero
// value (no address) serves nothing, and each method is then a no-op.
type authzenListener struct {
	handler *authzen.Handler
	lis     net.Listener
	srv     *http.Server
	tls     bool
}

// listenAuthZEN binds the AuthZEN listener with the others, before the database is
// touched; its evaluation endpoints answer 503 until startBackend attaches the job
// service. It serves over TLS with the gRPC server's certificate and client CAs.
func listenAuthZEN(cfg serveConfig, auth *server.Authenticator, tlsCfg *tls.Config, log *slog.Logger) (*authzenListener, error) {
	if cfg.AuthZENAddr == "" {
		return &authzenListener{}, nil
	}
	h, err := authzen.New(authzen.Config{Auth: auth, Log: log, BaseURL: cfg.AuthZENURL, MaxCallTime: cfg.MaxCallTime})
	if err != nil {
		return nil, fmt.Errorf("--authzen-url: %w", err)
	}
	lis, err := net.Listen("tcp", cfg.AuthZENAddr)
	if err != nil {
		return nil, fmt.Errorf("--authzen-addr: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: cfg.MaxCallTime,
		IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	if tlsCfg != nil {
		srv.TLSConfig = tlsCfg.Clone()
	}
	return &authzenListener{handler: h, lis: lis, srv: srv, tls: tlsCfg != nil}, nil
}

func (a *authzenListener) serve(errc chan<- error) {
	if a.lis == nil {
		return
	}
	go func() {
		var err error
		if a.tls {
			err = a.srv.ServeTLS(a.lis, "", "") // the certificate is in TLSConfig
		} else {
			err = a.srv.Serve(a.lis)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("authzen: %w", err)
		}
	}()
}

func (a *authzenListener) addr() string {
	if a.lis == nil {
		return ""
	}
	return a.lis.Addr().String()
}

func (a *authzenListener) shutdown(ctx context.Context) {
	if a.srv != nil {
		_ = a.srv.Shutdown(ctx)
	}
}
