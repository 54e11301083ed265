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
)

// httpListener is an optional HTTP surface beside gRPC (AuthZEN, the HTTP/JSON API):
// bound with the other listeners, served over TLS with the gRPC server's certificate and
// client CAs when there is one. Its zero value (no address) serves nothing, and each
// method is then a no-op.
type httpListener struct {
	name string // for errors: "authzen", "http api"
	lis  net.Listener
	srv  *http.Server
	tls  bool
}

// listenHTTP binds addr for h. flag names the address's flag in errors. There is no
// WriteTimeout: streams run up to --max-stream-time, and handlers set each call's write
// deadline from its own limit.
func listenHTTP(name, flag, addr string, h http.Handler, cfg serveConfig, tlsCfg *tls.Config, log *slog.Logger) (*httpListener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: cfg.MaxCallTime,
		IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	if tlsCfg != nil {
		srv.TLSConfig = tlsCfg.Clone()
	}
	return &httpListener{name: name, lis: lis, srv: srv, tls: tlsCfg != nil}, nil
}

func (l *httpListener) serve(errc chan<- error) {
	if l.lis == nil {
		return
	}
	go func() {
		var err error
		if l.tls {
			err = l.srv.ServeTLS(l.lis, "", "") // the certificate is in TLSConfig
		} else {
			err = l.srv.Serve(l.lis)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("%s: %w", l.name, err)
		}
	}()
}

func (l *httpListener) addr() string {
	if l.lis == nil {
		return ""
	}
	return l.lis.Addr().String()
}

// shutdown stops taking requests and waits for those in flight.
func (l *httpListener) shutdown(ctx context.Context) {
	if l.srv != nil {
		_ = l.srv.Shutdown(ctx)
	}
}
