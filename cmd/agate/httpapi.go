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

	"github.com/agate-pdp/agate/server"
)

// httpAPIListener is Agate's own API over HTTP (the Connect protocol) when
// --http-api-addr asks for it; its zero value serves nothing.
type httpAPIListener struct {
	lis net.Listener
	srv *http.Server
	tls bool
}

// listenHTTPAPI binds the HTTP API's listener with the others, before the database is
// touched. Its calls go through srv's gRPC server, which answers UNAVAILABLE (503) until
// the backend is attached. It serves over TLS with the gRPC server's certificate and
// client CAs, so client certificates authenticate here as there.
func listenHTTPAPI(cfg serveConfig, srv *server.Server, tlsCfg *tls.Config, log *slog.Logger) (*httpAPIListener, error) {
	if cfg.HTTPAPIAddr == "" {
		return &httpAPIListener{}, nil
	}
	h, err := srv.HTTPHandler()
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", cfg.HTTPAPIAddr)
	if err != nil {
		return nil, fmt.Errorf("--http-api-addr: %w", err)
	}
	// No WriteTimeout: streams run up to --max-stream-time; the handler sets each
	// call's write deadline from its own limit.
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: cfg.MaxCallTime,
		IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	if tlsCfg != nil {
		hs.TLSConfig = tlsCfg.Clone()
	}
	return &httpAPIListener{lis: lis, srv: hs, tls: tlsCfg != nil}, nil
}

func (a *httpAPIListener) serve(errc chan<- error) {
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
			errc <- fmt.Errorf("http api: %w", err)
		}
	}()
}

func (a *httpAPIListener) addr() string {
	if a.lis == nil {
		return ""
	}
	return a.lis.Addr().String()
}

// shutdown stops taking requests and waits for those in flight, which the gRPC
// server's own drain also waits for.
func (a *httpAPIListener) shutdown(ctx context.Context) {
	if a.srv != nil {
		_ = a.srv.Shutdown(ctx)
	}
}
