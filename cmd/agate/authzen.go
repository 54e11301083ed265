package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"

	"github.com/agate-pdp/agate/authzen"
	"github.com/agate-pdp/agate/server"
)

// authzenListener is the AuthZEN HTTP API when --authzen-addr asks for it; its zero
// value (no address) serves nothing.
type authzenListener struct {
	*httpListener
	handler *authzen.Handler
}

// listenAuthZEN binds the AuthZEN listener with the others, before the database is
// touched; its evaluation endpoints answer 503 until startBackend attaches the job
// service. It serves over TLS with the gRPC server's certificate and client CAs.
func listenAuthZEN(cfg serveConfig, auth *server.Authenticator, tlsCfg *tls.Config, log *slog.Logger) (*authzenListener, error) {
	if cfg.AuthZENAddr == "" {
		return &authzenListener{httpListener: &httpListener{}}, nil
	}
	h, err := authzen.New(authzen.Config{Auth: auth, Log: log, BaseURL: cfg.AuthZENURL, MaxCallTime: cfg.MaxCallTime})
	if err != nil {
		return nil, fmt.Errorf("--authzen-url: %w", err)
	}
	l, err := listenHTTP("authzen", "--authzen-addr", cfg.AuthZENAddr, h, cfg, tlsCfg, log)
	if err != nil {
		return nil, err
	}
	return &authzenListener{httpListener: l, handler: h}, nil
}
