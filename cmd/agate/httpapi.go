package main

import (
	"crypto/tls"
	"log/slog"

	"github.com/agate-pdp/agate/server"
)

// listenHTTPAPI binds the HTTP API's listener (Agate's own API over the Connect
// protocol) with the others, before the database is touched. Its calls go through srv's
// gRPC server, which answers UNAVAILABLE (503) until the backend is attached; over TLS
// client certificates authenticate here as there. No address serves nothing.
func listenHTTPAPI(cfg serveConfig, srv *server.Server, tlsCfg *tls.Config, log *slog.Logger) (*httpListener, error) {
	if cfg.HTTPAPIAddr == "" {
		return &httpListener{}, nil
	}
	h, err := srv.HTTPHandler()
	if err != nil {
		return nil, err
	}
	return listenHTTP("http api", "--http-api-addr", cfg.HTTPAPIAddr, h, cfg, tlsCfg, log)
}
